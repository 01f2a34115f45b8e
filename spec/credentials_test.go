package spec

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/subgate/subgate/spec/stack"
)

// Issue 22 part 4 through Kong's own log serializer (kong.yml's global
// file-log): the payment-access-token stays out of the upstream request and
// out of Kong's log entries. Kong's basic serializer redacts Authorization
// only and reads the request headers as the access phase left them
// (kong/pdk/log.lua serialize: kong.request.get_headers, i.e.
// ngx.req.get_headers after kong.service.request.set_headers changed
// them), so removing the header in the owned-headers call is enough.
func TestPaymentTokenNotInKongsLog(t *testing.T) {
	eachGateway(t, func(t *testing.T, kong string) {
		w := setupWith(t, stack.Options{Kong: kong})
		extraRoutes(t, w, `
      - name: training-forward
        paths: [/forward]
        strip_path: false
        plugins:
          - name: jwt-claims
            config: *jwt
          - name: payment-token
            config: {<<: *payment, forward_token: true}
`)
		pay := func(customer string) string {
			tok, err := w.Payment.Token(customer, []string{"coach"}, false)
			if err != nil {
				t.Fatal(err)
			}
			return tok.Token
		}
		aliceTok, bobsPay := pay(alice), pay(bob)
		w.waitRoute(t, "/training/plan", alice)
		w.waitRoute(t, "/sg/training/plan", alice)
		w.waitRoute(t, "/forward/plan", alice)
		with := func(bearerTok, payTok string) http.Header {
			h := bearer(bearerTok)
			h.Set("X-Payment-Token", payTok)
			return h
		}
		type sent struct {
			name    string
			id      string
			inLog   bool // the token in the request's log entry
			payment string
		}
		var all []sent
		for _, prefix := range []string{"", "/sg"} {
			shape := map[string]string{"": "chain", "/sg": "subgate"}[prefix]
			r := w.do(t, "GET", prefix+"/training/plan", with(w.token(t, alice, "DE", time.Hour), aliceTok))
			r.wantAllowed(t)
			if _, ok := r.upstrm["X-Payment-Token"]; ok {
				t.Errorf("%s: the upstream received the payment token", shape)
			}
			all = append(all, sent{shape + " allowed", r.upstrm["X-Kong-Request-Id"], false, aliceTok})
			// Another customer's live token: a denial by payment-token.
			r = w.do(t, "GET", prefix+"/training/plan", with(w.token(t, alice, "DE", time.Hour), bobsPay))
			r.wantDenied(t, 403, "payment_token_customer_mismatch")
			all = append(all, sent{shape + " another's token", r.body["request_id"].(string), false, bobsPay})
			// A denial before the payment check: subgate removes the token on
			// every denial; in the chain, payment-token never ran, so the
			// header is still in the entry (README: "Credentials in logs").
			r = w.do(t, "GET", prefix+"/training/plan", with(w.token(t, alice, "DE", -time.Hour), aliceTok))
			r.wantDenied(t, 401, "token_expired")
			all = append(all, sent{shape + " denied by the jwt check first", r.body["request_id"].(string), shape == "chain", aliceTok})
		}
		r := w.do(t, "GET", "/forward/plan", with(w.token(t, alice, "DE", time.Hour), aliceTok))
		r.wantAllowed(t)
		if r.upstrm["X-Payment-Token"] != aliceTok {
			t.Errorf("forward_token: the upstream got %q", r.upstrm["X-Payment-Token"])
		}
		all = append(all, sent{"forward_token", r.upstrm["X-Kong-Request-Id"], true, aliceTok})

		byID := map[string]map[string]any{}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			entries, err := stack.FileLog(w.FileLogPath)
			if err != nil && time.Now().After(deadline) {
				t.Fatal(err)
			} // else a line being written: read again
			for _, e := range entries {
				req, _ := e["request"].(map[string]any)
				id, _ := req["id"].(string)
				byID[id] = e
			}
			missing := 0
			for _, s := range all {
				if byID[s.id] == nil {
					missing++
				}
			}
			if missing == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("file-log has no entry for %d of %d requests", missing, len(all))
			}
		}
		for _, s := range all {
			req, _ := byID[s.id]["request"].(map[string]any)
			headers, _ := req["headers"].(map[string]any)
			got, in := headers["x-payment-token"]
			if in != s.inLog || (in && got != s.payment) {
				t.Errorf("%s: x-payment-token in Kong's log entry = %v (%.20v), want %v", s.name, in, got, s.inLog)
			}
			if headers["authorization"] != "REDACTED" {
				t.Errorf("%s: authorization %v in the log entry", s.name, headers["authorization"])
			}
		}
		raw, _ := os.ReadFile(w.FileLogPath)
		if n := strings.Count(string(raw), bobsPay); n != 0 {
			t.Errorf("another customer's payment token is in Kong's log %d times", n)
		}
	})
}
