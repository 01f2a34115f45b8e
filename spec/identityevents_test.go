package spec

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/subgate/subgate/pkg/usercontext"
	"github.com/subgate/subgate/spec/stack"
)

// TestIdentityEventsEvictTheFallbackCache drives the compiled user-context
// and subgate binaries: while the identity service answers 503, a user's
// cached context serves until the identity service publishes the user's
// deletion (its admin endpoint, through pkg/usercontext's publisher, on the
// stack's real Redis); from then on the 503 reaches the client, in both
// plugin servers, while another user's cached context still serves. A role
// change evicts too, and the next fresh context carries the new roles.
func TestIdentityEventsEvictTheFallbackCache(t *testing.T) {
	eachGateway(t, func(t *testing.T, kong string) { identityEventsEvict(t, setupWith(t, stack.Options{Kong: kong})) })
}

// identityEventsEvict is the spec on w's gateway and Redis (a Redis
// Cluster: the stream's follower reads its primary; the restart part needs
// the single Redis behind Sentinel).
func identityEventsEvict(t *testing.T, w *world) {
	routes := []string{"/account", "/sg/whoami"}
	tok := map[string]http.Header{alice: bearer(w.token(t, alice, "DE", time.Hour)), bob: bearer(w.token(t, bob, "DE", time.Hour))}
	source := func(path, user string) (string, response) {
		r := w.do(t, "GET", path, tok[user])
		if r.status == 200 {
			r.wantAllowed(t)
			if r.upstrm["X-User-Id"] != user {
				t.Fatalf("%s as %s: upstream %v", path, user, r.upstrm)
			}
			return r.upstrm["X-User-Context-Source"], r
		}
		r.wantDenied(t, 503, "identity_unavailable")
		return "503", r
	}
	for _, p := range routes {
		for _, u := range []string{alice, bob} {
			if src, r := source(p, u); src != "identity" {
				t.Fatalf("%s as %s: %s %s", p, u, src, r.raw)
			}
		}
	}
	w.Identity.SetMode("503")
	w.mu.Lock()
	w.calls = map[string][]callRecord{}
	w.mu.Unlock()
	for _, p := range routes {
		for _, u := range []string{alice, bob} {
			if src, r := source(p, u); src != "cache" {
				t.Fatalf("%s as %s on 503: %s %s, want the cached context", p, u, src, r.raw)
			}
		}
	}

	// The cache-served allow path costs the PDK calls of the fresh one
	// (the stand-in counts them).
	w.mu.Lock()
	for _, rec := range w.calls["account"] {
		if c := rec.calls["user-context"]; !rec.allowed || len(c) != 3 {
			t.Fatalf("cache-served /account: allowed %v, PDK calls %v; want 3 (headers, match_user's claims, upstream)", rec.allowed, c)
		}
	}
	if n := len(w.calls["account"]); n != 2 && w.Gateway != nil {
		t.Fatalf("observed %d /account requests", n)
	}
	w.mu.Unlock()

	publish := func(body string) {
		t.Helper()
		resp, err := http.Post(w.IdentityURL+"/admin/events", "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != 200 || out["id"] == "" {
			t.Fatalf("publishing %s: %d %v", body, resp.StatusCode, out)
		}
	}
	// until waits for path as user to answer want ("503" or a source).
	until := func(path, user, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			src, r := source(path, user)
			if src == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s as %s still %s %s after 10s, want %s", path, user, src, r.raw, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	publish(`{"type":"deleted","user_id":"` + alice + `"}`)
	for _, p := range routes {
		until(p, alice, "503")
		// Never again from the cache, however often asked.
		for range 3 {
			if src, r := source(p, alice); src != "503" {
				t.Fatalf("%s served alice after her deletion: %s %s", p, src, r.raw)
			}
		}
		if src, r := source(p, bob); src != "cache" {
			t.Fatalf("%s as bob: %s %s; an event for alice must leave bob's context", p, src, r.raw)
		}
	}

	publish(`{"type":"role_changed","user_id":"` + bob + `","roles":["customer","coach"]}`)
	for _, p := range routes {
		until(p, bob, "503")
	}
	w.Identity.SetMode("ok")
	src, r := source("/account", bob)
	if src != "identity" || !strings.Contains(r.upstrm["X-User-Context"], `"roles":["customer","coach"]`) {
		t.Fatalf("bob's fresh context after the role change: %s %v", src, r.upstrm)
	}
	w.do(t, "GET", "/account", tok[alice]).wantDenied(t, 401, "identity_unauthorized")

	if w.Redis == nil {
		return // a Redis Cluster: its failover is TestClusterFaults'
	}
	// Across a Redis restart (behind the stack's Sentinel): the followers
	// reconnect, and an event published after it still evicts.
	w.Redis.Restart(t)
	w.Identity.SetMode("503")
	for _, p := range routes {
		if p == "/sg/whoami" {
			// subgate's cached bob still has his old roles: a fresh one first.
			w.Identity.SetMode("ok")
			if src, r := source(p, bob); src != "identity" {
				t.Fatalf("%s as bob: %s %s", p, src, r.raw)
			}
			w.Identity.SetMode("503")
		}
		until(p, bob, "cache")
	}
	publish(`{"type":"blocked","user_id":"` + bob + `"}`)
	for _, p := range routes {
		until(p, bob, "503")
	}
}

// TestIdentityEventsReplayAcrossAnInstanceRestart: the fallback cache is
// the plugin server's and outlives instances. /account first runs without
// events and caches two users; a deletion is published while nothing
// follows the stream; then the config gains events (Kong's POST /config: a
// new instance of the same plugin server, a follower started over the live
// cache). Its replay of the window evicts the deleted user, and only her.
func TestIdentityEventsReplayAcrossAnInstanceRestart(t *testing.T) {
	w := setup(t)
	yml, err := os.ReadFile("../kong/kong.yml")
	if err != nil {
		t.Fatal(err)
	}
	const events = "              events:\n                redis: *redis\n"
	if !strings.Contains(string(yml), events) {
		t.Fatal("kong.yml's user-context config no longer has the events record this spec removes")
	}
	if err := w.Reload([]byte(strings.Replace(string(yml), events, "", 1))); err != nil {
		t.Fatal(err)
	}
	tok := map[string]http.Header{alice: bearer(w.token(t, alice, "DE", time.Hour)), bob: bearer(w.token(t, bob, "DE", time.Hour))}
	src := func(user string) string {
		r := w.do(t, "GET", "/account", tok[user])
		if r.status != 200 {
			r.wantDenied(t, 503, "identity_unavailable")
			return "503"
		}
		return r.upstrm["X-User-Context-Source"]
	}
	for _, u := range []string{alice, bob} {
		if s := src(u); s != "identity" {
			t.Fatalf("%s: %s", u, s)
		}
	}
	if _, err := w.Identity.Change(context.Background(), usercontext.UserDeleted, alice, nil); err != nil {
		t.Fatal(err)
	}
	w.Identity.SetMode("503")
	if s := src(alice); s != "cache" {
		t.Fatalf("without events the route cannot know of the deletion, yet answered %s: the spec's premise fails", s)
	}
	if err := w.Reload(yml); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if s := src(alice); s != "503" {
			t.Fatalf("alice, deleted before the follower started, served: %s", s)
		}
	}
	if s := src(bob); s != "cache" {
		t.Fatalf("bob: %s, want his cached context", s)
	}
}
