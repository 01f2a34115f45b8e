package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/Kong/go-pdk/test"

	"github.com/subgate/subgate/pkg/docblock"
	"github.com/subgate/subgate/pkg/kongx"
	"github.com/subgate/subgate/pkg/kongx/kongxtest"
	"github.com/subgate/subgate/pkg/usercontext"
)

// instance is the plugin instance go-pdk runs for one route.
type instance = kongx.Instance[usercontext.Config, *usercontext.Decider]

func TestMain(m *testing.M) {
	kongx.SetOutput(io.Discard)
	m.Run()
}

// identity answers the caller's bearer credential as its user id, or the
// status in mode.
func identity(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var mode atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m := mode.Load(); m != 0 {
			w.WriteHeader(int(m))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"user_id":%q,"plan":"premium"}`, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	}))
	t.Cleanup(srv.Close)
	return srv, &mode
}

func kongConfig(t *testing.T, set map[string]any) *instance {
	return kongxtest.Config(t, plugin, set)
}

func run(t *testing.T, c *instance, h http.Header) *test.TestEnv {
	t.Helper()
	env := kongxtest.Request(t, "/coach", h)
	kongxtest.Do(env, c)
	return env
}

func TestForwardsContextAndOwnsHeaders(t *testing.T) {
	srv, mode := identity(t)
	c := kongConfig(t, map[string]any{"identity_url": srv.URL, "field_headers": map[string]string{"user_id": "X-User-Id", "plan": "X-Plan"}})
	h := http.Header{"Authorization": {"Bearer alice"}, "X-User-Id": {"mallory"}, "X-User-Context": {`{"user_id":"mallory"}`}, "X-User-Context-Source": {"cache"}}
	env := run(t, c, h)
	if env.ClientRes.Status != 200 {
		t.Fatalf("%d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	got := env.ServiceReq.Headers
	if got.Get("X-User-Id") != "alice" || got.Get("X-Plan") != "premium" || got.Get("X-User-Context-Source") != "identity" ||
		!strings.Contains(got.Get("X-User-Context"), `"user_id":"alice"`) || len(got.Values("X-User-Id")) != 1 {
		t.Fatalf("upstream headers %v", got)
	}
	// The identity service goes 503: the cached context serves, marked as such.
	mode.Store(503)
	env = run(t, c, http.Header{"Authorization": {"Bearer alice"}})
	if env.ClientRes.Status != 200 || env.ServiceReq.Headers.Get("X-User-Context-Source") != "cache" || env.ServiceReq.Headers.Get("X-User-Id") != "alice" {
		t.Fatalf("fallback: %d %v", env.ClientRes.Status, env.ServiceReq.Headers)
	}
	// A caller never seen before gets 503.
	env = run(t, c, http.Header{"Authorization": {"Bearer bob"}})
	if env.ClientRes.Status != 503 || kongxtest.Code(t, env) != "identity_unavailable" || env.ClientRes.Headers.Get("Retry-After") == "" {
		t.Fatalf("never seen: %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	mode.Store(401)
	if env = run(t, c, http.Header{"Authorization": {"Bearer alice"}}); env.ClientRes.Status != 401 || kongxtest.Code(t, env) != "identity_unauthorized" {
		t.Fatalf("401: %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	mode.Store(408)
	if env = run(t, c, http.Header{"Authorization": {"Bearer alice"}}); env.ClientRes.Status != 504 || kongxtest.Code(t, env) != "identity_timeout" {
		t.Fatalf("408: %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
}

func TestMisconfigured(t *testing.T) {
	for name, set := range map[string]map[string]any{
		"no url":     {},
		"bad url":    {"identity_url": "ftp://x"},
		"bad header": {"identity_url": "http://127.0.0.1:1", "context_header": "X Bad"},
		"empty fwd":  {"identity_url": "http://127.0.0.1:1", "forward_headers": []string{""}},
	} {
		env := run(t, kongConfig(t, set), http.Header{"Authorization": {"Bearer a"}})
		if env.ClientRes.Status != 500 || kongxtest.Code(t, env) != "plugin_misconfigured" {
			t.Errorf("%s: %d %s", name, env.ClientRes.Status, env.ClientRes.Body)
		}
	}
}

// README.md's PDK-call table, counted through the Kong adapter.
func TestReadmePDKCalls(t *testing.T) {
	srv, mode := identity(t)
	c := kongConfig(t, map[string]any{"identity_url": srv.URL})
	h := http.Header{"Authorization": {"Bearer alice"}}
	docblock.Check(t, "README.md", "pdk", kongxtest.CallsTable(t,
		kongxtest.Case{Name: "allowed", Instance: c, Env: kongxtest.Request(t, "/coach", h), Status: 200},
		kongxtest.Case{Name: "denied: the identity service answers 401 (401 `identity_unauthorized`)", Instance: c,
			Env: kongxtest.Request(t, "/coach", h), Status: 401, Before: func() { mode.Store(401) }},
	))
}
