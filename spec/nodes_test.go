package spec

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/docker/demosvc"
	"github.com/subgate/subgate/pkg/redistest"
	"github.com/subgate/subgate/spec/stack"
)

// identityStub answers {"user_id": <the bearer>} or, in mode "503", 503.
func identityStub(t *testing.T) (url string, mode *atomic.Value) {
	mode = &atomic.Value{}
	mode.Store("ok")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mode.Load() == "503" {
			w.WriteHeader(503)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"user_id":%q}`, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	}))
	t.Cleanup(srv.Close)
	return srv.URL, mode
}

// get answers GET http://addr/path: status and body.
func get(addr, path string) (int, string) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSharedFallbackAcrossKongNodes: two Kong nodes, each with its own
// user-context plugin server (its own supervisor, process and local cache),
// share one real Redis as shared_cache. A user seen by node A is served by
// node B from the shared level when the identity service answers 503; a
// user no node saw gets the 503. Each plugin server's /ready names the
// shared level's Redis, and says so when it is gone.
func TestSharedFallbackAcrossKongNodes(t *testing.T) {
	eachGateway(t, func(t *testing.T, kong string) {
		rs := redistest.Start(t)
		identity, mode := identityStub(t)
		upstream := httptest.NewServer(demosvc.Echo())
		t.Cleanup(upstream.Close)
		yml := fmt.Sprintf(`_format_version: "3.0"
services:
  - name: echo
    url: %s
    routes:
      - name: account
        paths: [/account]
        plugins:
          - name: user-context
            config:
              identity_url: %s
              max_attempts: 1
              shared_cache:
                redis:
                  addresses: [%q]
`, upstream.URL, identity, rs.Addr)
		nodes := [2]*stack.Edge{}
		for i := range nodes {
			nodes[i] = startEdge(t, stack.EdgeOptions{Plugins: []string{"user-context"}, KongYML: []byte(yml), Kong: kong})
		}
		a, b := nodes[0], nodes[1]
		if a.Pid("user-context") == b.Pid("user-context") {
			t.Fatal("the two nodes share a plugin server")
		}
		source := func(e *stack.Edge, user string) (int, string) {
			t.Helper()
			status, _, body := send(t, e.URL, "GET", "/account", http.Header{"Authorization": {"Bearer " + user}})
			if status != 200 {
				var d struct{ Code string }
				_ = json.Unmarshal(body, &d)
				return status, d.Code
			}
			var echo struct{ Headers map[string]string }
			if err := json.Unmarshal(body, &echo); err != nil || echo.Headers["X-User-Id"] != user {
				t.Fatalf("%s: upstream saw %s", user, body)
			}
			return status, echo.Headers["X-User-Context-Source"]
		}
		if s, src := source(a, "alice"); s != 200 || src != "identity" {
			t.Fatalf("alice on A: %d %s", s, src)
		}
		rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
		t.Cleanup(func() { rdb.Close() })
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if keys, _ := rdb.Keys(context.Background(), "subgate:identity-cache:*:c:*").Result(); len(keys) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("node A wrote no shared entry")
			}
		}
		mode.Store("503")
		if s, src := source(b, "alice"); s != 200 || src != "cache" {
			t.Fatalf("alice on B on a 503: %d %s, want the shared level's copy", s, src)
		}
		if s, code := source(b, "bob"); s != 503 || code != "identity_unavailable" {
			t.Fatalf("bob, seen by no node, on B: %d %s", s, code)
		}
		if _, m := get(b.Deployment.Metrics["user-context"], "/metrics"); !strings.Contains(m, `subgate_identity_lookups_total{outcome="shared_fallback"} 1`) ||
			!strings.Contains(m, `subgate_identity_shared_reads_total{identity_url="`+identity+`",outcome="hit"} 1`) {
			t.Fatalf("B's metrics do not count the shared hit:\n%s", grepLines(m, "subgate_identity"))
		}

		// Health: /live, and /ready naming the Redis the instance holds.
		health := a.Deployment.Metrics["user-context"]
		if s, body := get(health, "/live"); s != 200 || body != "live\n" {
			t.Fatalf("/live: %d %q", s, body)
		}
		if s, body := get(health, "/ready"); s != 200 || !strings.Contains(body, "ok redis "+rs.Addr) {
			t.Fatalf("/ready: %d %q", s, body)
		}
		rs.Stop()
		if s, body := get(health, "/ready"); s != 503 || !strings.Contains(body, "fail redis "+rs.Addr) {
			t.Fatalf("/ready with Redis down: %d %q", s, body)
		}
		rs.Restart(t)
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if s, _ := get(health, "/ready"); s == 200 {
				break
			}
			if time.Now().After(deadline) {
				_, body := get(health, "/ready")
				t.Fatalf("/ready after Redis came back: %q", body)
			}
		}
	})
}
