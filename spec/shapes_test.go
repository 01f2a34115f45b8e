package spec

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/subgate/subgate/docker/demosvc"
)

// A shape is one way a route runs the checks: the four-plugin chain, or the
// subgate plugin doing the same in one event. kong.yml mirrors every chain
// route used below under /sg with subgate, its sections being the chain
// plugins' configs. Every scenario runs through both shapes and expects
// the same status, code and gateway-owned upstream headers from each; a
// scenario the shapes answer differently fails.
type shape struct {
	name   string
	prefix string // added to every path
	w      *world
	seen   []outcome // what the scenario's checks saw, in order
}

// outcome is one checked answer, as both shapes (and both gateways, the
// stand-in and Kong) must give it.
type outcome struct {
	Status     int
	Code       string
	Challenge  string            // WWW-Authenticate
	RetryAfter string            // Retry-After
	Upstream   map[string]string // the owned headers the upstream received
}

// owned are the headers the gateway owns on the routes below; the
// upstream's copy of each is compared between the shapes.
var owned = []string{"X-Customer-Id", "X-Country", "X-Subscription-Verified", "X-User-Id", "X-User-Country", "X-User-Context", "X-User-Context-Source"}

func shapes(w *world) []*shape {
	return []*shape{{name: "chain", w: w}, {name: "subgate", prefix: "/sg", w: w}}
}

func (s *shape) path(p string) string { return s.prefix + p }

func (s *shape) do(t *testing.T, method, path string, h http.Header) response {
	t.Helper()
	return s.w.do(t, method, s.path(path), h)
}

func (s *shape) allowed(t *testing.T, r response) response {
	t.Helper()
	r.wantAllowed(t)
	s.record(r)
	return r
}

func (s *shape) denied(t *testing.T, r response, status int, code string) response {
	t.Helper()
	r.wantDenied(t, status, code)
	s.record(r)
	return r
}

func (s *shape) record(r response) {
	o := outcome{Status: r.status, Challenge: r.header.Get("WWW-Authenticate"), RetryAfter: r.header.Get("Retry-After"), Upstream: map[string]string{}}
	o.Code, _ = r.body["code"].(string)
	for _, h := range owned {
		v, ok := r.upstrm[h]
		if !ok {
			continue
		}
		if h == "X-User-Context" { // the identity service stamps each answer
			var m map[string]any
			if json.Unmarshal([]byte(v), &m) == nil {
				delete(m, "resolved_at")
				b, _ := json.Marshal(m)
				v = string(b)
			}
		}
		o.Upstream[h] = v
	}
	s.seen = append(s.seen, o)
}

func (s *shape) waitRoute(t *testing.T, path, customer string) {
	t.Helper()
	s.w.waitRoute(t, s.path(path), customer)
}

type scenario struct {
	name string
	run  func(t *testing.T, w *world, s *shape)
}

// runScenarios runs each scenario through the chain, then through subgate,
// then compares what both saw. It returns what each saw, by
// "scenario/shape".
func runScenarios(t *testing.T, w *world, list []scenario) map[string][]outcome {
	seen := map[string][]outcome{}
	for _, sc := range list {
		t.Run(sc.name, func(t *testing.T) {
			both := shapes(w)
			for _, s := range both {
				if _, ok := w.Infos["subgate"]; !ok && s.name == "subgate" {
					t.Fatal("no subgate plugin server (is bin/subgate built?)")
				}
				t.Run(s.name, func(t *testing.T) { sc.run(t, w, s) })
			}
			chain, sg := both[0].seen, both[1].seen
			seen[sc.name+"/chain"], seen[sc.name+"/subgate"] = chain, sg
			if t.Failed() {
				return
			}
			if len(chain) != len(sg) {
				t.Fatalf("the chain answered %d checks, subgate %d", len(chain), len(sg))
			}
			for i := range chain {
				if !reflect.DeepEqual(chain[i], sg[i]) {
					t.Errorf("check %d: the chain answered %+v, subgate %+v", i+1, chain[i], sg[i])
				}
			}
		})
	}
	return seen
}

var scenarios = []scenario{
	{"jwt-claims alone", func(t *testing.T, w *world, s *shape) {
		h := bearer(w.token(t, alice, "DE", time.Hour))
		h.Set("X-Customer-Id", bob)
		h.Set("X-Country", "FR")
		r := s.allowed(t, s.do(t, "GET", "/me", h))
		if r.upstrm["X-Customer-Id"] != alice || r.upstrm["X-Country"] != "DE" {
			t.Fatalf("upstream saw %v; want the verified identity, never the spoofed one", r.upstrm)
		}
		s.denied(t, s.do(t, "GET", "/me", http.Header{"X-Customer-Id": {alice}}), 401, "token_missing")
		s.denied(t, s.do(t, "GET", "/me", bearer("abc.def.ghi")), 401, "token_malformed")
		s.denied(t, s.do(t, "GET", "/me", bearer(w.token(t, alice, "DE", -time.Hour))), 401, "token_expired")
		other, _ := demosvc.NewIdentity()
		forged, _ := other.Token(alice, "DE", time.Hour, nil)
		s.denied(t, s.do(t, "GET", "/me", bearer(forged)), 401, "token_unknown_key")
	}},

	{"subscription ownership", func(t *testing.T, w *world, s *shape) {
		aliceTok := bearer(w.token(t, alice, "DE", time.Hour))
		r := s.allowed(t, s.do(t, "GET", "/subscriptions/1234/deliveries", aliceTok))
		if r.upstrm["X-Subscription-Verified"] != "DE:1234" || r.upstrm["X-Customer-Id"] != alice {
			t.Fatalf("upstream headers %v", r.upstrm)
		}
		spoofed := aliceTok.Clone()
		spoofed.Set("X-Subscription-Verified", "FR:5678")
		r = s.allowed(t, s.do(t, "GET", "/subscriptions/1234", spoofed))
		if r.upstrm["X-Subscription-Verified"] != "DE:1234" {
			t.Fatalf("a spoofed verified header reached the upstream: %v", r.upstrm)
		}
		foreign := s.denied(t, s.do(t, "GET", "/subscriptions/5678", aliceTok), 403, "subscription_forbidden")
		unknown := s.denied(t, s.do(t, "GET", "/subscriptions/999", aliceTok), 403, "subscription_forbidden")
		if foreign.body["message"] != unknown.body["message"] {
			t.Fatal("foreign and unknown subscriptions are distinguishable")
		}
		// Same id, other country: bob's in FR, not alice's.
		s.denied(t, s.do(t, "GET", "/subscriptions/1234", bearer(w.token(t, alice, "FR", time.Hour))), 403, "subscription_forbidden")
		// No token: the JWT check stops everything before any Redis lookup.
		s.denied(t, s.do(t, "GET", "/subscriptions/1234", http.Header{"X-Customer-Id": {alice}, "X-Country": {"DE"}}), 401, "token_missing")
	}},

	{"odd path spellings", func(t *testing.T, w *world, s *shape) {
		tok := bearer(w.token(t, alice, "DE", time.Hour))
		// Kong normalizes these to /subscriptions/1234: alice's own.
		for _, p := range []string{"/subscriptions/%31234", "/subscriptions//1234", "/subscriptions/5678/../1234", "/subscriptions/./1234/"} {
			s.allowed(t, s.do(t, "GET", p, tok))
		}
		// Never bob's 5678, whatever the spelling.
		for _, p := range []string{"/subscriptions/5678", "/subscriptions/%35678", "/subscriptions/1234/../5678", "/subscriptions//5678/"} {
			s.denied(t, s.do(t, "GET", p, tok), 403, "subscription_forbidden")
		}
		for _, p := range []string{"/subscriptions/01234", "/subscriptions/1234%2F5678", "/subscriptions/1234;v=1", "/subscriptions/abc", "/subscriptions/", "/subscriptions/%2B1234"} {
			s.denied(t, s.do(t, "GET", p, tok), 400, "subscription_id_invalid")
		}
	}},

	{"payment-access-token", func(t *testing.T, w *world, s *shape) {
		s.waitRoute(t, "/training/plan", alice)
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
		s.allowed(t, s.do(t, "GET", "/training/plan", h(alice, pay(alice, []string{"coach"}, false))))
		s.denied(t, s.do(t, "GET", "/training/plan", h(alice, "")), 401, "payment_token_missing")
		s.denied(t, s.do(t, "GET", "/training/plan", h(alice, "not.a.token")), 401, "payment_token_invalid")
		s.denied(t, s.do(t, "GET", "/training/plan", h(alice, pay(alice, []string{"coach"}, true))), 401, "payment_token_expired")
		s.denied(t, s.do(t, "GET", "/training/plan", h(alice, pay(bob, []string{"coach"}, false))), 403, "payment_token_customer_mismatch")
		s.denied(t, s.do(t, "GET", "/training/plan", h(alice, pay(alice, []string{"nutrition"}, false))), 403, "entitlement_missing")
		forged, _ := demosvc.NewIdentity() // an EC key the payment service never published
		ft, _ := forged.Token(alice, "DE", time.Hour, map[string]any{"entitlements": []string{"coach"}, "jti": "x"})
		s.denied(t, s.do(t, "GET", "/training/plan", h(alice, ft)), 401, "payment_token_invalid")
		// No JWT: the JWT check answers first; the payment token alone is not enough.
		nojwt := http.Header{"X-Payment-Token": {pay(alice, []string{"coach"}, false)}}
		s.denied(t, s.do(t, "GET", "/training/plan", nojwt), 401, "token_missing")
	}},

	{"a cancellation revokes a live payment token", func(t *testing.T, w *world, s *shape) {
		s.waitRoute(t, "/training/plan", bob)
		live, _ := w.Payment.Token(bob, []string{"coach"}, false)
		h := bearer(w.token(t, bob, "DE", time.Hour))
		h.Set("X-Payment-Token", live.Token)
		s.allowed(t, s.do(t, "GET", "/training/plan", h))
		published := time.Now()
		if _, err := w.Payment.Publish(context.Background(), "cancellation", bob); err != nil {
			t.Fatal(err)
		}
		for {
			r := s.do(t, "GET", "/training/plan", h)
			if r.status == 401 && r.body["code"] == "payment_token_revoked" {
				s.denied(t, r, 401, "payment_token_revoked")
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
		s.allowed(t, s.do(t, "GET", "/training/plan", h))
	}},

	// On /whoami (jwt-claims + user-context; /sg/whoami for subgate, whose
	// jwt section is required).
	{"user-context and its 503 fallback", func(t *testing.T, w *world, s *shape) {
		carol := "7d3e2a10-1c4b-4a5e-9f00-3c2b1a000003"
		h := bearer(w.token(t, alice, "DE", time.Hour))
		h.Set("X-User-Id", bob)
		h.Set("X-User-Context-Source", "cache")
		r := s.allowed(t, s.do(t, "GET", "/whoami", h))
		if r.upstrm["X-User-Id"] != alice || r.upstrm["X-User-Context-Source"] != "identity" || r.upstrm["X-User-Country"] != "DE" ||
			!strings.Contains(r.upstrm["X-User-Context"], alice) {
			t.Fatalf("upstream %v", r.upstrm)
		}
		defer w.Identity.SetMode("ok")
		w.Identity.SetMode("503")
		r = s.allowed(t, s.do(t, "GET", "/whoami", h))
		if r.upstrm["X-User-Context-Source"] != "cache" || r.upstrm["X-User-Id"] != alice {
			t.Fatalf("503 should serve alice's cached context: %v", r.upstrm)
		}
		s.denied(t, s.do(t, "GET", "/whoami", bearer(w.token(t, carol, "DE", time.Hour))), 503, "identity_unavailable")
		w.Identity.SetMode("408") // a timeout never serves the cache
		s.denied(t, s.do(t, "GET", "/whoami", h), 504, "identity_timeout")
		w.Identity.SetMode("ok")
		w.Identity.Disable(alice, true) // 401 from identity: passed on, and alice's copy evicted
		s.denied(t, s.do(t, "GET", "/whoami", h), 401, "identity_unauthorized")
		w.Identity.Disable(alice, false)
		w.Identity.SetMode("503")
		s.denied(t, s.do(t, "GET", "/whoami", h), 503, "identity_unavailable")
	}},

	{"all four checks", func(t *testing.T, w *world, s *shape) {
		s.waitRoute(t, "/coach/subscriptions/1234", alice)
		pt, _ := w.Payment.Token(alice, []string{"coach"}, false)
		h := bearer(w.token(t, alice, "DE", time.Hour))
		h.Set("X-Payment-Token", pt.Token)
		spoofed := h.Clone()
		for _, name := range owned {
			spoofed.Set(name, "spoofed")
		}
		r := s.allowed(t, s.do(t, "GET", "/coach/subscriptions/1234", spoofed))
		if r.upstrm["X-Customer-Id"] != alice || r.upstrm["X-User-Id"] != alice || r.upstrm["X-User-Context-Source"] != "identity" {
			t.Fatalf("upstream %v", r.upstrm)
		}
		s.denied(t, s.do(t, "GET", "/coach/subscriptions/5678", h), 403, "subscription_forbidden")
		s.denied(t, s.do(t, "GET", "/coach/subscriptions/abc", h), 400, "subscription_id_invalid")
		noPay := bearer(w.token(t, alice, "DE", time.Hour))
		s.denied(t, s.do(t, "GET", "/coach/subscriptions/1234", noPay), 401, "payment_token_missing")
		s.denied(t, s.do(t, "GET", "/coach/subscriptions/1234", http.Header{"X-Payment-Token": {pt.Token}}), 401, "token_missing")
		defer w.Identity.SetMode("ok")
		w.Identity.SetMode("503") // alice's context is cached by the allow above
		r = s.allowed(t, s.do(t, "GET", "/coach/subscriptions/1234", h))
		if r.upstrm["X-User-Context-Source"] != "cache" {
			t.Fatalf("upstream %v", r.upstrm)
		}
		w.Identity.SetMode("ok")
	}},
}

// redisDown stops Redis: it runs after the scenarios that need it.
var redisDown = []scenario{
	{"Redis down is 503, never an allow", func(t *testing.T, w *world, s *shape) {
		tok := bearer(w.token(t, alice, "DE", time.Hour))
		w.Redis.Stop()
		r := s.denied(t, s.do(t, "GET", "/subscriptions/1234", tok), 503, "ownership_unavailable")
		if r.header.Get("Retry-After") == "" {
			t.Fatal("503 without Retry-After")
		}
		w.Redis.Restart(t) // persistence is off here: the stream and pairs are gone
		if _, err := w.Seed(context.Background()); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if r := s.do(t, "GET", "/subscriptions/1234", tok); r.status == 200 {
				s.allowed(t, r)
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("no recovery after Redis came back: %d %s", r.status, r.raw)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}},
}
