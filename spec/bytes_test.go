package spec

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/subgate/subgate/spec/stack"
)

// Issue 22 part 1 through the compiled binaries and Kong's own
// plugin-server code, both shapes: a client's bytes that are not UTF-8 (a
// header value, a cookie, the token, a path Kong decodes) are a 400
// request_bytes_invalid, never a 500 and never an allow; valid UTF-8 is no
// fault of its own.
var clientBytesScenarios = []scenario{
	{"a header value that is not UTF-8", func(t *testing.T, w *world, s *shape) {
		h := bearer(w.token(t, alice, "DE", time.Hour))
		h.Set("X-Note", "caf\xff")
		s.denied(t, s.do(t, "GET", "/me", h), 400, "request_bytes_invalid")
		h.Set("X-Note", "café") // UTF-8: read and ignored
		s.allowed(t, s.do(t, "GET", "/me", h))
	}},
	{"a Latin-1 cookie", func(t *testing.T, w *world, s *shape) {
		h := bearer(w.token(t, alice, "DE", time.Hour))
		h.Add("Cookie", "theme=dark")
		h.Add("Cookie", "city=K\xf6ln")
		s.denied(t, s.do(t, "GET", "/subscriptions/1234", h), 400, "request_bytes_invalid")
	}},
	{"a token with a byte that is not UTF-8", func(t *testing.T, w *world, s *shape) {
		s.denied(t, s.do(t, "GET", "/me", bearer(w.token(t, alice, "DE", time.Hour)+"\xff")), 400, "request_bytes_invalid")
		s.denied(t, s.do(t, "GET", "/me", bearer(w.token(t, alice, "DE", time.Hour)+"é")), 401, "token_malformed")
	}},
	{"the whole chain: a header", func(t *testing.T, w *world, s *shape) {
		h := paid(t, w)
		h.Set("Accept-Language", "fr-\xe9")
		s.denied(t, s.do(t, "GET", "/coach/subscriptions/1234", h), 400, "request_bytes_invalid")
	}},
}

// A path that is not UTF-8 once Kong decodes it ("%FF") never reaches a
// plugin through Kong's default router (traditional_compatible, an ATC
// router: 404, see spec/gateway); with router_flavor traditional (the Lua
// router) it does, and the plugin that reads the path refuses it.
var pathBytesScenarios = []scenario{
	{"a path that is not UTF-8 once Kong decodes it", func(t *testing.T, w *world, s *shape) {
		tok := bearer(w.token(t, alice, "DE", time.Hour))
		s.denied(t, s.do(t, "GET", "/subscriptions/4242%FF", tok), 400, "request_bytes_invalid")
		s.denied(t, s.do(t, "GET", "/subscriptions/1234/%C3%28", tok), 400, "request_bytes_invalid")
		s.denied(t, s.do(t, "GET", "/coach/subscriptions/1234%FF", paid(t, w)), 400, "request_bytes_invalid")
		// Valid UTF-8 in the path is the ownership check's to judge.
		s.denied(t, s.do(t, "GET", "/subscriptions/1234%C3%A9", tok), 400, "subscription_id_invalid")
		s.allowed(t, s.do(t, "GET", "/subscriptions/1234/r%C3%A9sum%C3%A9", tok))
	}},
}

// paid is alice's bearer token and a payment-access-token with coach.
func paid(t *testing.T, w *world) http.Header {
	t.Helper()
	pay, err := w.Payment.Token(alice, []string{"coach"}, false)
	if err != nil {
		t.Fatal(err)
	}
	h := bearer(w.token(t, alice, "DE", time.Hour))
	h.Set("X-Payment-Token", pay.Token)
	return h
}

func TestClientBytesThatAreNotUTF8(t *testing.T) {
	eachGateway(t, func(t *testing.T, kong string) {
		w := setupWith(t, stack.Options{Kong: kong})
		runScenarios(t, w, clientBytesScenarios)
		// user-context alone reads headers (forwarded credentials): the same.
		h := http.Header{"Authorization": {"Bearer " + w.token(t, alice, "DE", time.Hour)}, "Cookie": {"sid=\xff"}}
		w.do(t, "GET", "/account", h).wantDenied(t, 400, "request_bytes_invalid")
		// Kong's default router answers a path that is not UTF-8 itself.
		for _, p := range []string{"/subscriptions/4242%FF", "/sg/subscriptions/4242%FF", "/me/%C3"} {
			if r := w.do(t, "GET", p, bearer(w.token(t, alice, "DE", time.Hour))); r.status != 404 || r.upstrOK || r.body["code"] != nil {
				t.Errorf("%s: got %d %s, want Kong's router's 404", p, r.status, r.raw)
			}
		}
		wantOperatorView(t, w, `request header x-note"`, "request header cookie", "request header authorization", "request header accept-language")
	})
}

func TestPathBytesThatAreNotUTF8WithTheLuaRouter(t *testing.T) {
	eachGateway(t, func(t *testing.T, kong string) {
		w := setupWith(t, stack.Options{Kong: kong, KongSettings: map[string]string{"router_flavor": "traditional"}})
		runScenarios(t, w, pathBytesScenarios)
		wantOperatorView(t, w, `request path is not valid UTF-8: \"/subscriptions/4242\\xff\"`, `\"/coach/subscriptions/1234\\xff\"`)
	})
}

// wantOperatorView: the causes in the audit lines, naming a header and
// never its value; no error-level line from a plugin, no 500.
func wantOperatorView(t *testing.T, w *world, causes ...string) {
	t.Helper()
	out, log := w.Output.String(), strings.Join(w.PluginLog(), "\n")
	for _, want := range causes {
		if !strings.Contains(out, want) {
			t.Errorf("the audit lines lack %q", want)
		}
	}
	if strings.Contains(out, "K\\xf6ln") || strings.Contains(out, "caf\\xff") {
		t.Error("an audit line carries a header's value")
	}
	if strings.Contains(out, `"level":"ERROR"`) || strings.Contains(out, "internal_error") || strings.Contains(log, "[error]") {
		t.Errorf("a client's bytes caused an error-level line or a 500:\n%s\n%s", tail(out, 3000), tail(log, 2000))
	}
}
