package usercontext

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/metrics"
	"github.com/subgate/subgate/pkg/payevents"
	"github.com/subgate/subgate/pkg/redisconn"
	"github.com/subgate/subgate/pkg/redistest"
)

// eventsScene is an identity service, a Redis holding the identity-event
// stream, the publisher the identity service would use, and a route with
// events on that stream.
type eventsScene struct {
	id   *identity
	rdb  *redis.Client
	pub  *Publisher
	addr string
}

func newEventsScene(t *testing.T, addr string) *eventsScene {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { rdb.Close() })
	pub, err := NewPublisher(rdb, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &eventsScene{id: newIdentity(t, answer{status: 200}), rdb: rdb, pub: pub, addr: addr}
}

func (s *eventsScene) route(t *testing.T, mod func(*Config)) *Client {
	return client(t, s.id.srv.URL, func(o *Config) {
		o.MaxAttempts = 2
		o.Events = &EventsConfig{Redis: redisconn.Config{Addresses: []string{s.addr}, MaxRetries: -1}, StaleAfterSeconds: 1}
		if mod != nil {
			mod(o)
		}
	})
}

func (s *eventsScene) publish(t *testing.T, typ EventType, user string) {
	t.Helper()
	if _, err := s.pub.Publish(context.Background(), Event{Type: typ, UserID: user, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
}

func as(user string) map[string]string { return map[string]string{"Authorization": "Bearer " + user} }

// cache fills the route's cache for each user (the identity service echoes
// the bearer as the user id).
func cache(t *testing.T, c *Client, users ...string) {
	t.Helper()
	for _, u := range users {
		if out, d := c.Lookup(context.Background(), as(u)); d != nil || out.Cached || out.UserID != u {
			t.Fatalf("caching %s: %+v %v", u, out, d)
		}
	}
}

// served reports whether the fallback serves user's cached context on a
// 503 (the identity service must answer 503), and the denial's cause if not.
func served(t *testing.T, c *Client, user string) (bool, string) {
	t.Helper()
	out, d := c.Lookup(context.Background(), as(user))
	if d != nil {
		if d.Code != denial.IdentityUnavailable || d.Status != 503 {
			t.Fatalf("%s: denial %+v, want the identity service's 503", user, d)
		}
		return false, d.Cause
	}
	if !out.Cached || out.UserID != user {
		t.Fatalf("%s: %+v, want the cached context", user, out)
	}
	return true, ""
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// holds reports whether the route's cache holds a context of user.
func holds(c *Client, user string) bool {
	for _, k := range c.svc.cache.Keys() {
		if e, ok := c.svc.cache.Peek(k); ok && e.UserID == user {
			return true
		}
	}
	return false
}

// TestEachEventTypeEvicts: deleted, blocked and role_changed each evict
// every cached context of their user (two credentials of one user here),
// at once, and the fallback then does not serve it: the identity service's
// 503 reaches the client. Other users' contexts still serve.
func TestEachEventTypeEvicts(t *testing.T) {
	for _, typ := range []EventType{UserDeleted, UserBlocked, RoleChanged} {
		t.Run(string(typ), func(t *testing.T) {
			s := newEventsScene(t, miniredis.RunT(t).Addr())
			c := s.route(t, func(o *Config) { o.ForwardHeaders = []string{"Authorization", "Cookie"} })
			cache(t, c, "u1", "u2")
			second := as("u1")
			second["Cookie"] = "session=2"
			if _, d := c.Lookup(context.Background(), second); d != nil {
				t.Fatal(d)
			}
			if n := len(c.svc.byUser["u1"]); n != 2 {
				t.Fatalf("u1 indexed under %d keys, want 2", n)
			}
			s.publish(t, typ, "u1")
			waitUntil(t, "eviction", func() bool { return !holds(c, "u1") })
			if !holds(c, "u2") {
				t.Fatal("another user's context evicted")
			}
			s.id.set(answer{status: 503})
			if ok, cause := served(t, c, "u1"); ok || !strings.Contains(cause, "no usable cached context") {
				t.Fatalf("u1 served from the cache after %s (cause %q)", typ, cause)
			}
			if ok, _ := served(t, c, "u2"); !ok {
				t.Fatal("u2's context not served on 503")
			}
		})
	}
}

// TestLookupInFlightDuringAnEvent: a lookup that began before the user's
// event was applied may carry the identity service's answer from before
// the change, and it is cached after the eviction ran: it is never served,
// and is dropped when met.
func TestLookupInFlightDuringAnEvent(t *testing.T) {
	s := newEventsScene(t, miniredis.RunT(t).Addr())
	c := s.route(t, nil)
	s.id.set(answer{status: 200, slow: 150 * time.Millisecond}) // attempt timeout is 200 ms
	done := make(chan error)
	go func() {
		out, d := c.Lookup(context.Background(), as("u1"))
		if d != nil || out.Cached {
			done <- fmt.Errorf("%+v %v", out, d)
		}
		done <- nil
	}()
	waitUntil(t, "the lookup to reach the identity service", func() bool { return s.id.hits.Load() == 1 })
	s.publish(t, UserBlocked, "u1")
	waitUntil(t, "the event applied", func() bool { return c.ev.f.Applied() == 1 })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !holds(c, "u1") {
		t.Fatal("the in-flight answer was not cached: the scene does not test the race")
	}
	s.id.set(answer{status: 503})
	if ok, cause := served(t, c, "u1"); ok || !strings.Contains(cause, "applied after its lookup began") {
		t.Fatalf("served a context fetched across the user's event (cause %q)", cause)
	}
	if holds(c, "u1") {
		t.Fatal("the refused context stays cached")
	}
	// A lookup that begins after the event is the identity service's new word.
	s.id.set(answer{status: 200})
	cache(t, c, "u1")
	s.id.set(answer{status: 503})
	if ok, cause := served(t, c, "u1"); !ok {
		t.Fatalf("a context fetched after the event is not served: %s", cause)
	}
}

// TestStaleEventsFailClosed (real Redis): while the follower cannot hear
// from Redis for longer than stale_after_seconds, no cached context is
// served (it cannot know of a deletion); once Redis answers again, it is.
func TestStaleEventsFailClosed(t *testing.T) {
	srv := redistest.Start(t)
	s := newEventsScene(t, srv.Addr)
	c := s.route(t, nil)
	cache(t, c, "u1")
	s.id.set(answer{status: 503})
	if ok, cause := served(t, c, "u1"); !ok {
		t.Fatalf("not served with current events: %s", cause)
	}
	srv.Stop()
	waitUntil(t, "staleness", func() bool { return c.ev.f.Stale(time.Second) })
	if ok, cause := served(t, c, "u1"); ok || !strings.Contains(cause, "stale") {
		t.Fatalf("served while the identity events are stale (cause %q)", cause)
	}
	srv.Restart(t)
	waitUntil(t, "recovery", func() bool { return !c.ev.f.Stale(time.Second) })
	if ok, cause := served(t, c, "u1"); !ok {
		t.Fatalf("not served after recovery: %s", cause)
	}
}

// TestNoEventLostAcrossRedisRestart (real Redis, AOF on so the stream
// survives): events published while the follower's connection is killed,
// and right after a server restart while it is still reconnecting, all
// evict; the one user without an event is still served.
func TestNoEventLostAcrossRedisRestart(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	s := newEventsScene(t, srv.Addr)
	c := s.route(t, nil)
	users := []string{"u1", "u2", "u3", "u4", "keep"}
	cache(t, c, users...)
	waitUntil(t, "first sync", func() bool { return !c.ev.f.Stale(time.Second) })
	ctx := context.Background()
	s.publish(t, UserDeleted, "u1")
	if err := s.rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	s.publish(t, UserBlocked, "u2")
	srv.Restart(t)
	s.publish(t, RoleChanged, "u3") // the follower is in its reconnect backoff
	s.publish(t, UserDeleted, "u4")
	waitUntil(t, "every event applied", func() bool { return c.ev.f.Applied() == 4 })
	for _, u := range users[:4] {
		if holds(c, u) {
			t.Errorf("%s still cached: an event was lost", u)
		}
	}
	s.id.set(answer{status: 503})
	for _, u := range users[:4] {
		if ok, _ := served(t, c, u); ok {
			t.Errorf("%s served after its event", u)
		}
	}
	if ok, cause := served(t, c, "keep"); !ok {
		t.Fatalf("a user without an event is not served: %s", cause)
	}
}

// TestNewFollowerReplaysOverALiveCache: the cache is process-wide and
// outlives plugin instances; a follower started later (a route newly
// given events, or new settings) replays the window, so a deletion
// published while no follower ran still evicts. A new instance of a route
// with the same settings joins the running follower and its state.
func TestNewFollowerReplaysOverALiveCache(t *testing.T) {
	srv := redistest.Start(t)
	s := newEventsScene(t, srv.Addr)
	plain := client(t, s.id.srv.URL, nil) // same identity URL, no events: same cache
	cache(t, plain, "gone", "kept")
	s.publish(t, UserDeleted, "gone") // nobody follows yet
	c := s.route(t, nil)
	waitUntil(t, "the replay", func() bool { return !holds(c, "gone") })
	if !holds(c, "kept") {
		t.Fatal("replay evicted a user without an event")
	}
	again := s.route(t, nil) // a new instance of the same config
	if again.ev.f != c.ev.f {
		t.Fatal("a new instance started a second follower")
	}
	cache(t, again, "later")
	s.publish(t, UserBlocked, "later")
	waitUntil(t, "eviction through the shared follower", func() bool { return !holds(again, "later") })
	s.id.set(answer{status: 503})
	if ok, _ := served(t, again, "gone"); ok {
		t.Fatal("served a user deleted while no follower ran")
	}
	if ok, cause := served(t, again, "kept"); !ok {
		t.Fatalf("kept not served: %s", cause)
	}
}

// TestUnknownTypeEvictsAndBadEntriesAreSkipped: an event type this version
// does not know still evicts its user (eviction only costs a fallback); an
// entry without a user is skipped, and the follower goes on.
func TestUnknownTypeEvictsAndBadEntriesAreSkipped(t *testing.T) {
	m := miniredis.RunT(t)
	s := newEventsScene(t, m.Addr())
	c := s.route(t, nil)
	cache(t, c, "u1", "u2")
	ctx := context.Background()
	s.rdb.XAdd(ctx, &redis.XAddArgs{Stream: DefaultEventsStream, Values: []any{"type", "deleted", "at", "1"}})
	s.rdb.XAdd(ctx, &redis.XAddArgs{Stream: DefaultEventsStream, Values: []any{"type", "password_changed", "user", "u1"}})
	s.publish(t, UserDeleted, "u2")
	waitUntil(t, "events", func() bool { return !holds(c, "u1") && !holds(c, "u2") })
	if got := c.ev.f.Applied(); got != 2 {
		t.Fatalf("applied %d entries, want 2 (the one without a user skipped)", got)
	}
}

func TestPublisherWritesTheDocumentedFields(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	pub, _ := NewPublisher(rdb, "", time.Hour)
	at := time.UnixMilli(1_790_000_000_123)
	id, err := pub.Publish(context.Background(), Event{Type: RoleChanged, UserID: "u1", At: at, ID: "ev-1"})
	if err != nil {
		t.Fatal(err)
	}
	msgs, _ := rdb.XRange(context.Background(), "subgate:identity-events", id, id).Result()
	if len(msgs) != 1 {
		t.Fatalf("entry %s not on the default stream", id)
	}
	want := map[string]any{"type": "role_changed", "user": "u1", "at": "1790000000123", "event_id": "ev-1"}
	if fmt.Sprint(msgs[0].Values) != fmt.Sprint(want) {
		t.Fatalf("fields %v, want %v", msgs[0].Values, want)
	}
	e, err := decodeEvent(msgs[0])
	if err != nil || e != (Event{Type: RoleChanged, UserID: "u1", At: at, ID: "ev-1"}) {
		t.Fatalf("decoded %+v %v", e, err)
	}
	id2, _ := pub.Publish(context.Background(), Event{Type: UserDeleted, UserID: "u2", At: at})
	msgs, _ = rdb.XRange(context.Background(), "subgate:identity-events", id2, id2).Result()
	if s, _ := msgs[0].Values["event_id"].(string); len(s) != 32 {
		t.Fatalf("no event id made: %v", msgs[0].Values)
	}
	for _, e := range []Event{{Type: "upgraded", UserID: "u", At: at}, {Type: UserBlocked, At: at}, {Type: UserBlocked, UserID: "u"}} {
		if _, err := pub.Publish(context.Background(), e); err == nil {
			t.Errorf("published invalid %+v", e)
		}
	}
}

// TestIndexFollowsTheCache: the user index forgets keys the LRU drops, so
// it stays bounded by cache_size.
func TestIndexFollowsTheCache(t *testing.T) {
	id := newIdentity(t, answer{status: 200})
	c := client(t, id.srv.URL, func(o *Config) { o.CacheSize = 2 })
	cache(t, c, "a", "b", "c", "d")
	c.svc.mu.Lock()
	n := len(c.svc.byUser)
	c.svc.mu.Unlock()
	if n != 2 || c.svc.cache.Len() != 2 {
		t.Fatalf("index holds %d users for %d cached contexts", n, c.svc.cache.Len())
	}
}

// TestEventsConfigDeclared: the events record is optional; given, it
// starts from its declared defaults; its window is max_stale plus the
// deadline.
func TestEventsConfigDeclared(t *testing.T) {
	var c Config
	config.Defaults(&c)
	if err := config.Decode([]byte(`{"identity_url":"http://id/context","max_stale_seconds":60,"deadline_ms":1500}`), &c); err != nil || c.Events != nil {
		t.Fatalf("absent events: %+v %v", c.Events, err)
	}
	if got := EventsWindow(c); got != 61500*time.Millisecond {
		t.Fatalf("window %v", got)
	}
	if err := config.Decode([]byte(`{"events":{"redis":{"addresses":["r:6379"]}}}`), &c); err != nil {
		t.Fatal(err)
	}
	if c.Events == nil || c.Events.Stream != "subgate:identity-events" || c.Events.StaleAfterSeconds != 10 {
		t.Fatalf("events %+v", c.Events)
	}
	var bad Config
	config.Defaults(&bad)
	if err := config.Decode([]byte(`{"identity_url":"http://id/context","events":{"stream":"s"}}`), &bad); err == nil {
		t.Fatal("events without redis accepted")
	}
}

var _ payevents.Handler = (*evictions)(nil)

// TestFollowerMetricsCarryTheStream: the identity follower reports through
// the payment follower's metrics, labelled with its stream.
func TestFollowerMetricsCarryTheStream(t *testing.T) {
	s := newEventsScene(t, miniredis.RunT(t).Addr())
	pub, _ := NewPublisher(s.rdb, "metrics-identity-events", time.Hour)
	c := s.route(t, func(o *Config) { o.Events.Stream = "metrics-identity-events" })
	if _, err := pub.Publish(context.Background(), Event{Type: UserBlocked, UserID: "u1", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the event", func() bool { return c.ev.f.Applied() == 1 })
	exp := metrics.Exposition()
	for _, want := range []string{`subgate_revocation_events_applied_total{stream="metrics-identity-events"} 1`,
		`subgate_revocation_follower_lag_seconds{stream="metrics-identity-events"}`} {
		if !strings.Contains(exp, want) {
			t.Errorf("no %s in\n%s", want, exp)
		}
	}
}

// TestFirstFallbackAfterStartSeesTheReplay: the first 503 after a follower
// starts over a live cache waits for its replay and then applies what the
// replay brought: a user deleted while nobody followed is not served even
// by the very first fallback.
func TestFirstFallbackAfterStartSeesTheReplay(t *testing.T) {
	s := newEventsScene(t, redistest.Start(t).Addr)
	plain := client(t, s.id.srv.URL, nil)
	cache(t, plain, "gone", "kept")
	s.publish(t, UserDeleted, "gone")
	s.id.set(answer{status: 503})
	c := s.route(t, nil) // the follower starts; no wait for it
	if ok, _ := served(t, c, "gone"); ok {
		t.Fatal("the first fallback after the follower's start served a user its replay deletes")
	}
	if ok, cause := served(t, c, "kept"); !ok {
		t.Fatalf("kept: %s", cause)
	}
}
