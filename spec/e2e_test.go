// Package spec holds the end-to-end specs: the compiled plugin binaries,
// driven through Kong's plugin-server protocol (spec/kongsim) by a local
// gateway that loads kong/kong.yml (spec/gateway), with a real redis-server
// behind a real Sentinel and the demo services on loopback.
package spec

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/subgate/subgate/docker/demosvc"
	"github.com/subgate/subgate/spec/kongsim"
	"github.com/subgate/subgate/spec/stack"
)

const (
	alice = stack.Alice
	bob   = stack.Bob
)

// world is one run of the specs: the stack plus what the specs observe.
type world struct {
	*stack.Stack
	gw    *httptest.Server
	mu    sync.Mutex
	calls map[string][]callRecord // route -> requests' PDK calls
}

type callRecord struct {
	allowed bool
	calls   map[string][]string
}

// binaries returns the plugin binaries: $SUBGATE_BIN (make test builds
// them there) or a fresh build into a temp dir.
func binaries(t *testing.T) string {
	if dir := os.Getenv("SUBGATE_BIN"); dir != "" {
		return dir
	}
	dir := t.TempDir()
	entries, err := os.ReadDir("../plugins")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, e.Name()), "../plugins/"+e.Name()).CombinedOutput()
		if err != nil {
			t.Fatalf("building %s: %v\n%s", e.Name(), err, out)
		}
	}
	return dir
}

func setup(t *testing.T) *world {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("SUBGATE_REQUIRE_REDIS") == "1" {
			t.Fatal("redis-server not installed and SUBGATE_REQUIRE_REDIS=1")
		}
		t.Skip("redis-server not installed")
	}
	st, err := stack.Start(stack.Options{BinDir: binaries(t), KongYML: "../kong/kong.yml", SeedCSV: "../" + stack.SeedCSV,
		GatewayAddr: "127.0.0.1:0", IdentityAddr: "127.0.0.1:0", PaymentAddr: "127.0.0.1:0", EchoAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	w := &world{Stack: st, calls: map[string][]callRecord{}}
	st.Gateway.Observe = func(route string, req *kongsim.Request) {
		rec := callRecord{allowed: req.Exited() == nil, calls: map[string][]string{}}
		for name := range st.Servers {
			if c := req.Calls(name); len(c) > 0 {
				rec.calls[name] = c
			}
		}
		w.mu.Lock()
		w.calls[route] = append(w.calls[route], rec)
		w.mu.Unlock()
	}
	w.gw = httptest.NewServer(st.Gateway)
	t.Cleanup(w.gw.Close)
	return w
}

func (w *world) token(t *testing.T, customer, country string, ttl time.Duration) string {
	t.Helper()
	tok, err := w.Identity.Token(customer, country, ttl, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type response struct {
	status  int
	header  http.Header
	body    map[string]any
	raw     string
	upstrm  map[string]string // the echo's view of the headers it received
	upstrOK bool
}

// do sends a request through the gateway. rawPath is sent as is.
func (w *world) do(t *testing.T, method, rawPath string, h http.Header) response {
	t.Helper()
	req, err := http.NewRequest(method, w.gw.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = rawPath // keeps %-encodings, dots and slashes exactly as written
	req.Header = h
	resp, err := w.gw.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	_ = json.Unmarshal(b, &r.body)
	if hs, ok := r.body["headers"].(map[string]any); ok && r.body["method"] != nil {
		r.upstrOK = true
		r.upstrm = map[string]string{}
		for k, v := range hs {
			r.upstrm[k], _ = v.(string)
		}
	}
	return r
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func (r response) wantDenied(t *testing.T, status int, code string) {
	t.Helper()
	if r.status != status || r.body["code"] != code {
		t.Fatalf("got %d %s, want %d %s", r.status, r.raw, status, code)
	}
	if id, _ := r.body["request_id"].(string); len(id) != 32 {
		t.Fatalf("no request_id in %s", r.raw)
	}
	if r.upstrOK {
		t.Fatal("a denial reached the upstream")
	}
	if status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), `Bearer error="invalid_token"`) {
		t.Fatalf("401 without WWW-Authenticate: %v", r.header)
	}
}

func (r response) wantAllowed(t *testing.T) {
	t.Helper()
	if r.status != 200 || !r.upstrOK {
		t.Fatalf("got %d %s, want the upstream's 200", r.status, r.raw)
	}
}

func TestEndToEnd(t *testing.T) {
	w := setup(t)

	t.Run("plugin info as Kong reads it", func(t *testing.T) {
		order := []string{"jwt-claims", "subscription-owner", "payment-token", "user-context"}
		last := 1 << 30
		for _, name := range order {
			srv, ok := w.Servers[name]
			if !ok {
				continue // not built yet
			}
			if fmt.Sprint(srv.Info.Phases) != "[access]" || srv.Info.Version == "" {
				t.Errorf("%s: phases %v version %q", name, srv.Info.Phases, srv.Info.Version)
			}
			if srv.Info.Priority >= last {
				t.Errorf("%s: priority %d not below the plugin before it (%d)", name, srv.Info.Priority, last)
			}
			last = srv.Info.Priority
		}
	})

	t.Run("public route runs no plugin", func(t *testing.T) {
		r := w.do(t, "GET", "/public/hello", http.Header{"X-Customer-Id": {"spoofed"}})
		r.wantAllowed(t)
	})

	t.Run("jwt-claims alone", func(t *testing.T) {
		h := bearer(w.token(t, alice, "DE", time.Hour))
		h.Set("X-Customer-Id", bob)
		h.Set("X-Country", "FR")
		r := w.do(t, "GET", "/me", h)
		r.wantAllowed(t)
		if r.upstrm["X-Customer-Id"] != alice || r.upstrm["X-Country"] != "DE" {
			t.Fatalf("upstream saw %v; want the verified identity, never the spoofed one", r.upstrm)
		}
		w.do(t, "GET", "/me", http.Header{"X-Customer-Id": {alice}}).wantDenied(t, 401, "token_missing")
		w.do(t, "GET", "/me", bearer("abc.def.ghi")).wantDenied(t, 401, "token_malformed")
		w.do(t, "GET", "/me", bearer(w.token(t, alice, "DE", -time.Hour))).wantDenied(t, 401, "token_expired")
		other, _ := demosvc.NewIdentity()
		forged, _ := other.Token(alice, "DE", time.Hour, nil)
		w.do(t, "GET", "/me", bearer(forged)).wantDenied(t, 401, "token_unknown_key")
	})

	t.Run("subscription ownership", func(t *testing.T) {
		aliceTok := bearer(w.token(t, alice, "DE", time.Hour))
		r := w.do(t, "GET", "/subscriptions/1234/deliveries", aliceTok)
		r.wantAllowed(t)
		if r.upstrm["X-Subscription-Verified"] != "DE:1234" || r.upstrm["X-Customer-Id"] != alice {
			t.Fatalf("upstream headers %v", r.upstrm)
		}
		foreign := w.do(t, "GET", "/subscriptions/5678", aliceTok)
		unknown := w.do(t, "GET", "/subscriptions/999", aliceTok)
		foreign.wantDenied(t, 403, "subscription_forbidden")
		unknown.wantDenied(t, 403, "subscription_forbidden")
		if foreign.body["message"] != unknown.body["message"] {
			t.Fatal("foreign and unknown subscriptions are distinguishable")
		}
		// Same id, other country: bob's in FR, not alice's.
		w.do(t, "GET", "/subscriptions/1234", bearer(w.token(t, alice, "FR", time.Hour))).wantDenied(t, 403, "subscription_forbidden")
		// No token: jwt-claims stops the chain before any Redis lookup.
		w.do(t, "GET", "/subscriptions/1234", http.Header{"X-Customer-Id": {alice}, "X-Country": {"DE"}}).wantDenied(t, 401, "token_missing")
	})

	t.Run("odd path spellings", func(t *testing.T) {
		tok := bearer(w.token(t, alice, "DE", time.Hour))
		// Kong normalizes these to /subscriptions/1234: alice's own.
		for _, p := range []string{"/subscriptions/%31234", "/subscriptions//1234", "/subscriptions/5678/../1234", "/subscriptions/./1234/"} {
			if r := w.do(t, "GET", p, tok); r.status != 200 {
				t.Errorf("%s: %d %s", p, r.status, r.raw)
			}
		}
		// Never bob's 5678, whatever the spelling.
		for _, p := range []string{"/subscriptions/5678", "/subscriptions/%35678", "/subscriptions/1234/../5678", "/subscriptions//5678/"} {
			w.do(t, "GET", p, tok).wantDenied(t, 403, "subscription_forbidden")
		}
		for _, p := range []string{"/subscriptions/01234", "/subscriptions/1234%2F5678", "/subscriptions/1234;v=1", "/subscriptions/abc", "/subscriptions/", "/subscriptions/%2B1234"} {
			w.do(t, "GET", p, tok).wantDenied(t, 400, "subscription_id_invalid")
		}
	})

	t.Run("payment-access-token", func(t *testing.T) {
		w.waitRoute(t, "/training/plan", alice)
		pay := func(customer string, ent []string, expired bool) string {
			tok, err := w.Payment.Token(customer, ent, expired)
			if err != nil {
				t.Fatal(err)
			}
			return tok.Token
		}
		h := func(customer, payTok string) http.Header {
			hh := bearer(w.token(t, customer, "DE", time.Hour))
			if payTok != "" {
				hh.Set("X-Payment-Token", payTok)
			}
			return hh
		}
		w.do(t, "GET", "/training/plan", h(alice, pay(alice, []string{"coach"}, false))).wantAllowed(t)
		w.do(t, "GET", "/training/plan", h(alice, "")).wantDenied(t, 401, "payment_token_missing")
		w.do(t, "GET", "/training/plan", h(alice, "not.a.token")).wantDenied(t, 401, "payment_token_invalid")
		w.do(t, "GET", "/training/plan", h(alice, pay(alice, []string{"coach"}, true))).wantDenied(t, 401, "payment_token_expired")
		w.do(t, "GET", "/training/plan", h(alice, pay(bob, []string{"coach"}, false))).wantDenied(t, 403, "payment_token_customer_mismatch")
		w.do(t, "GET", "/training/plan", h(alice, pay(alice, []string{"nutrition"}, false))).wantDenied(t, 403, "entitlement_missing")
		forged, _ := demosvc.NewIdentity() // an EC key the payment service never published
		ft, _ := forged.Token(alice, "DE", time.Hour, map[string]any{"entitlements": []string{"coach"}, "jti": "x"})
		w.do(t, "GET", "/training/plan", h(alice, ft)).wantDenied(t, 401, "payment_token_invalid")
		// No JWT: jwt-claims answers first; the payment token alone is not enough.
		nojwt := http.Header{"X-Payment-Token": {pay(alice, []string{"coach"}, false)}}
		w.do(t, "GET", "/training/plan", nojwt).wantDenied(t, 401, "token_missing")
	})

	t.Run("a cancellation revokes a live payment token across the chain", func(t *testing.T) {
		w.waitRoute(t, "/training/plan", bob)
		live, _ := w.Payment.Token(bob, []string{"coach"}, false)
		h := bearer(w.token(t, bob, "DE", time.Hour))
		h.Set("X-Payment-Token", live.Token)
		w.do(t, "GET", "/training/plan", h).wantAllowed(t)
		published := time.Now()
		if _, err := w.Payment.Publish(context.Background(), "cancellation", bob); err != nil {
			t.Fatal(err)
		}
		for {
			r := w.do(t, "GET", "/training/plan", h)
			if r.status == 401 && r.body["code"] == "payment_token_revoked" {
				t.Logf("revoked %v after publication", time.Since(published).Round(time.Microsecond))
				break
			}
			if time.Since(published) > 2*time.Second {
				t.Fatalf("still %d %s 2s after the cancellation", r.status, r.raw)
			}
		}
		// A token issued in a later second (after a reactivation) passes.
		time.Sleep(time.Until(published.Truncate(time.Second).Add(1100 * time.Millisecond)))
		if _, err := w.Payment.Publish(context.Background(), "reactivation", bob); err != nil {
			t.Fatal(err)
		}
		fresh, _ := w.Payment.Token(bob, []string{"coach"}, false)
		h.Set("X-Payment-Token", fresh.Token)
		w.do(t, "GET", "/training/plan", h).wantAllowed(t)
	})

	t.Run("user-context and its 503 fallback", func(t *testing.T) {
		carol := "7d3e2a10-1c4b-4a5e-9f00-3c2b1a000003"
		h := bearer(w.token(t, alice, "DE", time.Hour))
		h.Set("X-User-Id", bob)
		h.Set("X-User-Context-Source", "cache")
		r := w.do(t, "GET", "/account", h)
		r.wantAllowed(t)
		if r.upstrm["X-User-Id"] != alice || r.upstrm["X-User-Context-Source"] != "identity" || r.upstrm["X-User-Country"] != "DE" ||
			!strings.Contains(r.upstrm["X-User-Context"], alice) {
			t.Fatalf("upstream %v", r.upstrm)
		}
		defer w.Identity.SetMode("ok")
		w.Identity.SetMode("503")
		r = w.do(t, "GET", "/account", h)
		r.wantAllowed(t)
		if r.upstrm["X-User-Context-Source"] != "cache" || r.upstrm["X-User-Id"] != alice {
			t.Fatalf("503 should serve alice's cached context: %v", r.upstrm)
		}
		w.do(t, "GET", "/account", bearer(w.token(t, carol, "DE", time.Hour))).wantDenied(t, 503, "identity_unavailable")
		w.Identity.SetMode("408") // a timeout never serves the cache
		w.do(t, "GET", "/account", h).wantDenied(t, 504, "identity_timeout")
		w.Identity.SetMode("ok")
		w.Identity.Disable(alice, true) // 401 from identity: passed on, and alice's copy evicted
		w.do(t, "GET", "/account", h).wantDenied(t, 401, "identity_unauthorized")
		w.Identity.Disable(alice, false)
		w.Identity.SetMode("503")
		w.do(t, "GET", "/account", h).wantDenied(t, 503, "identity_unavailable")
	})

	t.Run("all four plugins in one chain", func(t *testing.T) {
		w.waitRoute(t, "/coach/subscriptions/1234", alice)
		pt, _ := w.Payment.Token(alice, []string{"coach"}, false)
		h := bearer(w.token(t, alice, "DE", time.Hour))
		h.Set("X-Payment-Token", pt.Token)
		r := w.do(t, "GET", "/coach/subscriptions/1234", h)
		r.wantAllowed(t)
		if r.upstrm["X-Customer-Id"] != alice || r.upstrm["X-User-Id"] != alice {
			t.Fatalf("upstream %v", r.upstrm)
		}
		w.do(t, "GET", "/coach/subscriptions/5678", h).wantDenied(t, 403, "subscription_forbidden")
		noPay := bearer(w.token(t, alice, "DE", time.Hour))
		w.do(t, "GET", "/coach/subscriptions/1234", noPay).wantDenied(t, 401, "payment_token_missing")
	})

	t.Run("PDK calls on the allow path", func(t *testing.T) {
		w.mu.Lock()
		w.calls = map[string][]callRecord{}
		w.mu.Unlock()
		tok := bearer(w.token(t, alice, "DE", time.Hour))
		w.do(t, "GET", "/me", tok).wantAllowed(t)
		w.do(t, "GET", "/subscriptions/1234", tok).wantAllowed(t)
		w.do(t, "GET", "/public/x", nil).wantAllowed(t)
		paid := tok.Clone()
		pt, _ := w.Payment.Token(alice, []string{"coach"}, false)
		paid.Set("X-Payment-Token", pt.Token)
		w.do(t, "GET", "/training/plan", paid).wantAllowed(t)
		w.do(t, "GET", "/account", tok).wantAllowed(t)
		w.do(t, "GET", "/coach/subscriptions/1234", paid).wantAllowed(t)
		budget := map[string]int{"jwt-claims": 3, "subscription-owner": 3 /* 2 + verified_header */, "payment-token": 2, "user-context": 2}
		var table strings.Builder
		table.WriteString("\n| route | plugin | PDK calls | methods |\n| --- | --- | --- | --- |\n")
		w.mu.Lock()
		defer w.mu.Unlock()
		routes := make([]string, 0, len(w.calls))
		for r := range w.calls {
			routes = append(routes, r)
		}
		sort.Strings(routes)
		for _, route := range routes {
			for _, rec := range w.calls[route] {
				if !rec.allowed {
					t.Fatalf("%s was denied", route)
				}
				total := 0
				for _, name := range []string{"jwt-claims", "subscription-owner", "payment-token", "user-context"} {
					c, ok := rec.calls[name]
					if !ok {
						continue
					}
					total += len(c)
					fmt.Fprintf(&table, "| %s | %s | %d | %s |\n", route, name, len(c), strings.Join(c, ", "))
					if b, ok := budget[name]; ok && len(c) > b {
						t.Errorf("%s on %s: %d PDK calls, budget %d", name, route, len(c), b)
					}
				}
				fmt.Fprintf(&table, "| %s | **chain** | %d | |\n", route, total)
				if total > 10 {
					t.Errorf("%s: %d PDK calls for the chain, budget 10", route, total)
				}
			}
		}
		t.Log(table.String())
	})

	t.Run("Redis down is 503, never an allow", func(t *testing.T) {
		tok := bearer(w.token(t, alice, "DE", time.Hour))
		w.Redis.Stop()
		r := w.do(t, "GET", "/subscriptions/1234", tok)
		r.wantDenied(t, 503, "ownership_unavailable")
		if r.header.Get("Retry-After") == "" {
			t.Fatal("503 without Retry-After")
		}
		w.Redis.Restart(t) // persistence is off here: the stream and pairs are gone
		if _, err := w.Seed(context.Background()); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if r := w.do(t, "GET", "/subscriptions/1234", tok); r.status == 200 {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("no recovery after Redis came back: %d %s", r.status, r.raw)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("a killed plugin server is an error, never an allow", func(t *testing.T) {
		tok := bearer(w.token(t, alice, "DE", time.Hour))
		srv := w.Servers["subscription-owner"]
		srv.Kill()
		r := w.do(t, "GET", "/subscriptions/5678", tok) // bob's: an allow here would be a breach
		if r.status != 500 || r.upstrOK {
			t.Fatalf("with the plugin server dead: %d %s", r.status, r.raw)
		}
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		// Kong restarts the instance on "no plugin instance" and retries.
		w.do(t, "GET", "/subscriptions/1234", tok).wantAllowed(t)
		w.do(t, "GET", "/subscriptions/5678", tok).wantDenied(t, 403, "subscription_forbidden")
	})

	t.Run("audit lines never carry a token", func(t *testing.T) {
		tok := w.token(t, alice, "DE", time.Hour)
		w.do(t, "GET", "/me", bearer(tok)).wantAllowed(t)
		srv := w.Servers["jwt-claims"]
		// The output reaches the log through a pipe: wait for the line.
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(srv.Output(), `"route_id":"route-profile"`) && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		out := srv.Output()
		if strings.Contains(out, tok) || strings.Contains(out, strings.Split(tok, ".")[2]) {
			t.Fatal("a token reached the plugin server's output")
		}
		if !strings.Contains(out, `"decision":"allow"`) || !strings.Contains(out, `"route_id":"route-profile"`) {
			t.Fatalf("no audit line for the allowed request:\n%s", tail(out, 2000))
		}
		// Kong logs that output at info, "[jwt-claims:PID] " first
		// (process.lua grab_logs): at its default log_level notice an
		// operator sees none of it.
		if info := w.Log.SeenAt(kongsim.LogInfo); !strings.Contains(info, fmt.Sprintf("[info] [jwt-claims:%d] {", srv.Pid())) || strings.Contains(info, tok) {
			t.Fatalf("the audit line is not in the error log at info as Kong writes it:\n%s", tail(info, 2000))
		}
		if seen := w.Log.Seen(); strings.Contains(seen, `"decision":"allow"`) {
			t.Fatalf("plugin output shown at log_level %v:\n%s", w.Log.Level(), tail(seen, 2000))
		}
	})
}

// waitRoute waits until the payment-token plugin's follower has synced
// (before it, the route answers 503 revocation_state_stale: fail closed).
func (w *world) waitRoute(t *testing.T, path, customer string) {
	t.Helper()
	tok, _ := w.Payment.Token(customer, []string{"coach"}, false)
	h := bearer(w.token(t, customer, "DE", time.Hour))
	h.Set("X-Payment-Token", tok.Token)
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := w.do(t, "GET", path, h)
		if r.body["code"] != "revocation_state_stale" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still %d %s after 5s", path, r.status, r.raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
