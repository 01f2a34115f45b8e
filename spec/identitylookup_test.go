package spec

import (
	"net/http"
	"testing"
	"time"

	"github.com/subgate/subgate/spec/stack"
)

// identity_lookup through the gateway, on subgate's coaching route
// (parallel, the shipped default) and on a copy with sequential: the same
// answers, in the chain's order, while the identity service is asked as
// each mode says. parallel asks it for a request the ownership check denies
// (its documented cost), sequential never; neither for a forged token.
func TestIdentityLookupModes(t *testing.T) { eachGateway(t, identityLookupModes) }

func identityLookupModes(t *testing.T, kong string) {
	w := setupWith(t, stack.Options{Kong: kong})
	extraRoutes(t, w, `
      - name: sg-coaching-sequential
        paths: [/sq/coach]
        strip_path: false
        plugins:
          - name: subgate
            config:
              identity_lookup: sequential
              jwt: *jwt
              ownership:
                redis: *redis
                path_patterns:
                  - /sq/coach/subscriptions/{subscription_id}
              payment: *payment
              identity: *identity
`)
	for _, mode := range []struct {
		prefix         string
		askedOnDenials int64
	}{{"/sg", 1}, {"/sq", 0}} {
		w.waitRoute(t, mode.prefix+"/coach/subscriptions/1234", alice)
		pt, _ := w.Payment.Token(alice, []string{"coach"}, false)
		paid := func(tok string) http.Header {
			h := bearer(tok)
			h.Set("X-Payment-Token", pt.Token)
			return h
		}
		tok := w.token(t, alice, "DE", time.Hour)
		// asked runs a request and checks how often the identity service
		// was asked for it: a parallel lookup may still be under way when a
		// denial has answered, so it waits a little for late ones.
		asked := func(name, path string, h http.Header, status int, code string, want int64) {
			t.Helper()
			before := w.Identity.Hits()
			r := w.do(t, "GET", mode.prefix+path, h)
			if code == "" {
				r.wantAllowed(t)
			} else {
				r.wantDenied(t, status, code)
			}
			deadline := time.Now().Add(500 * time.Millisecond)
			for w.Identity.Hits()-before < want && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond) // and none more than that
			if got := w.Identity.Hits() - before; got != want {
				t.Errorf("%s %s: the identity service was asked %d times, want %d", mode.prefix, name, got, want)
			}
		}
		asked("allowed", "/coach/subscriptions/1234", paid(tok), 200, "", 1)
		asked("another's subscription", "/coach/subscriptions/5678", paid(tok), 403, "subscription_forbidden", mode.askedOnDenials)
		asked("a forged token", "/coach/subscriptions/1234", paid(tok[:len(tok)-4]+"AAAA"), 401, "token_invalid_signature", 0)

		// The identity service down, nothing cached for a fresh token: the
		// first failing check in the chain's order answers.
		w.Identity.SetMode("503")
		fresh := w.token(t, alice, "DE", 2*time.Hour)
		w.do(t, "GET", mode.prefix+"/coach/subscriptions/5678", paid(fresh)).wantDenied(t, 403, "subscription_forbidden")
		w.do(t, "GET", mode.prefix+"/coach/subscriptions/1234", bearer(fresh)).wantDenied(t, 401, "payment_token_missing")
		w.do(t, "GET", mode.prefix+"/coach/subscriptions/1234", paid(fresh)).wantDenied(t, 503, "identity_unavailable")
		w.Identity.SetMode("ok")
	}
}
