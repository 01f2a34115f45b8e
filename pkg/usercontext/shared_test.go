package usercontext

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/payevents"
	"github.com/subgate/subgate/pkg/redisconn"
	"github.com/subgate/subgate/pkg/redistest"
)

// sharedScene is one identity service and one real redis-server that N
// simulated Kong nodes share: each node is a Client with its own local
// cache, shared level (worker and queue) and, with events, its own follower,
// as separate plugin-server processes have.
type sharedScene struct {
	id  *identity
	rc  redisconn.Config
	rdb redis.UniversalClient
}

func newSharedScene(t *testing.T) *sharedScene {
	t.Helper()
	return sceneOn(t, redisconn.Config{Addresses: []string{redistest.Start(t).Addr}, MaxRetries: -1})
}

func sceneOn(t *testing.T, rc redisconn.Config) *sharedScene {
	t.Helper()
	rdb, err := rc.Client("redis")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return &sharedScene{id: newIdentity(t, answer{status: 200}), rc: rc, rdb: rdb}
}

func (s *sharedScene) redis() redisconn.Config { return s.rc }

// node is one simulated Kong node's route: with shared_cache unless local
// is set, with identity events when events is set.
func (s *sharedScene) node(t *testing.T, shared, events bool, mod func(*Config)) *Client {
	t.Helper()
	c := client(t, s.id.srv.URL, func(o *Config) {
		o.MaxAttempts = 2
		if shared {
			o.SharedCache = &SharedCacheConfig{}
			config.Defaults(o.SharedCache) // as Kong's config arrives: write_interval_seconds 30
			o.SharedCache.Redis = s.redis()
		}
		if events {
			o.Events = &EventsConfig{Redis: s.redis(), StaleAfterSeconds: 2}
		}
		if mod != nil {
			mod(o)
		}
	})
	// The node's own process-wide state, apart from the other nodes'.
	svc, err := newService(c.o)
	if err != nil {
		t.Fatal(err)
	}
	c.svc = svc
	if shared {
		sc := *c.o.SharedCache
		config.FillZero(&sc)
		rdb, err := sc.Redis.Client("shared_cache.redis")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rdb.Close() })
		c.shared = newSharedLevel(rdb, sc, c.o.IdentityURL)
	}
	if events {
		rdb, err := c.o.Events.Redis.Client("redis")
		if err != nil {
			t.Fatal(err)
		}
		f := payevents.Follow(rdb, payevents.FollowerOptions{Stream: DefaultEventsStream, Window: EventsWindow(c.o), Block: 50 * time.Millisecond}, newEvictions())
		f.Start()
		t.Cleanup(func() { f.Stop(); rdb.Close() })
		if c.ev, err = attachEvents(f, svc, 2*time.Second); err != nil {
			t.Fatal(err)
		}
		if c.shared != nil {
			c.shared.noteWindow(EventsWindow(c.o))
			c.ev.v.attachShared(c.shared)
		}
	}
	return c
}

// lookupAs looks user up through c (the identity service echoes the bearer).
func lookupAs(c *Client, user string) (*Result, *denial.Denial) {
	res, den := c.Lookup(context.Background(), as(user))
	if c.shared != nil {
		c.shared.flush()
	}
	return res, den
}

// entries counts the shared level's context entries in Redis (in every
// primary of a Cluster).
func (s *sharedScene) entries(t *testing.T) int {
	t.Helper()
	n := 0
	count := func(ctx context.Context, c *redis.Client) error {
		keys, err := c.Keys(ctx, DefaultSharedPrefix+"*}:c:*").Result()
		n += len(keys)
		return err
	}
	var err error
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		err = cc.ForEachMaster(context.Background(), func(ctx context.Context, c *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return count(ctx, c)
		})
	} else {
		err = count(context.Background(), s.rdb.(*redis.Client))
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A user seen by node A is served by node B on a 503 from the shared level;
// one no node saw is not; and B's own fresh answers never read it.
func TestSharedLevelCoversAnotherNode(t *testing.T) {
	s := newSharedScene(t)
	a, b := s.node(t, true, false, nil), s.node(t, true, false, nil)
	if res, den := lookupAs(a, "alice"); den != nil || res.Cached {
		t.Fatalf("alice on A: %+v %v", res, den)
	}
	if n := s.entries(t); n != 1 {
		t.Fatalf("%d shared entries after one success, want 1", n)
	}
	reads := sharedReads.Value(b.shared.label, "hit") + sharedReads.Value(b.shared.label, "miss")
	if res, den := lookupAs(b, "carol"); den != nil || res.Cached {
		t.Fatalf("carol on B: %+v %v", res, den)
	}
	if got := sharedReads.Value(b.shared.label, "hit") + sharedReads.Value(b.shared.label, "miss"); got != reads {
		t.Fatal("a fresh answer read the shared level")
	}
	s.id.set(answer{status: 503})
	res, den := lookupAs(b, "alice")
	if den != nil || !res.Cached || !res.Shared || res.UserID != "alice" || string(res.Raw) != `{"user_id":"alice"}` {
		t.Fatalf("alice on B, 503: %+v %v", res, den)
	}
	if age := time.Since(res.StoredAt); age < 0 || age > 5*time.Second {
		t.Fatalf("cache age %v", age)
	}
	d, _ := testDecider(b)
	up, _, den := d.lookup(context.Background(), map[string][]string{"authorization": {"Bearer alice"}}, nil)
	if den != nil || up["X-User-Context-Source"] != "cache" || up["X-User-Id"] != "alice" {
		t.Fatalf("upstream headers from the shared level: %v %v", up, den)
	}
	if _, den := lookupAs(b, "bob"); den == nil || den.Code != denial.IdentityUnavailable {
		t.Fatalf("bob, seen by no node: %v", den)
	}
}

// testDecider wraps a client built by a test (a node) in a decider.
func testDecider(c *Client) (*Decider, error) {
	return &Decider{client: c, owned: []string{"X-User-Context", "X-User-Context-Source", "X-User-Id"}}, nil
}

// Written only on success; read only on 503; never a credential or a
// context in clear in Redis; bounded in size; rewritten only when changed
// or older than write_interval_seconds; 401 deletes the shared copy; a
// copy naming another user than the verified one is refused; a tampered
// entry is a miss.
func TestSharedLevelRules(t *testing.T) {
	s := newSharedScene(t)
	a, b := s.node(t, true, false, nil), s.node(t, true, false, nil)
	for _, st := range []int{503, 408, 401, 403, 404, 500} {
		s.id.set(answer{status: st})
		lookupAs(a, "alice")
	}
	if n := s.entries(t); n != 0 {
		t.Fatalf("%d entries written by non-successes", n)
	}

	s.id.set(answer{status: 200, body: `{"user_id":"alice","email":"alice@example.com"}`})
	lookupAs(a, "alice")
	// In Redis: neither the credential nor the context, in keys or values.
	keys, _ := s.rdb.Keys(context.Background(), "*").Result()
	for _, k := range keys {
		v, _ := s.rdb.Dump(context.Background(), k).Result()
		for _, secret := range []string{"alice", "Bearer", "example.com"} {
			if strings.Contains(k, secret) || strings.Contains(v, secret) {
				t.Fatalf("Redis key %q (or its value) holds %q in clear", k, secret)
			}
		}
	}

	// Read only on 503: a timeout, a 5xx and a refusal never serve the copy.
	for st, code := range map[int]denial.Code{408: denial.IdentityTimeout, 500: denial.IdentityError, 404: denial.IdentityRejected} {
		s.id.set(answer{status: st})
		if _, den := lookupAs(b, "alice"); den == nil || den.Code != code {
			t.Fatalf("identity %d with a shared copy: %v, want %s", st, den, code)
		}
	}
	// match_user: a copy naming alice for a caller verified as bob.
	s.id.set(answer{status: 503})
	if _, den := b.lookup(context.Background(), as("alice"), "bob"); den == nil || den.Code != denial.IdentityUserMismatch {
		t.Fatalf("shared copy for another user: %v", den)
	}
	// 401 on any node deletes the credentials' shared copy.
	s.id.set(answer{status: 401})
	lookupAs(b, "alice")
	if n := s.entries(t); n != 0 {
		t.Fatalf("401 left %d shared entries", n)
	}

	// Rewrites: unchanged within the interval, no; changed, at once.
	s.id.set(answer{status: 200})
	written := sharedWrites.Value(a.shared.label, "written")
	lookupAs(a, "dave")
	lookupAs(a, "dave")
	if got := sharedWrites.Value(a.shared.label, "written") - written; got != 1 {
		t.Fatalf("an unchanged context written %d times within the interval, want 1", got)
	}
	s.id.set(answer{status: 200, body: `{"user_id":"dave","roles":["coach"]}`})
	lookupAs(a, "dave")
	if got := sharedWrites.Value(a.shared.label, "written") - written; got != 2 {
		t.Fatal("a changed context was not rewritten")
	}

	// A tampered entry opens to nothing: a miss, never a login.
	keys, _ = s.rdb.Keys(context.Background(), DefaultSharedPrefix+"*}:c:*").Result()
	if len(keys) != 1 {
		t.Fatalf("keys %v", keys)
	}
	v, _ := s.rdb.Get(context.Background(), keys[0]).Bytes()
	v[len(v)-1] ^= 1
	s.rdb.Set(context.Background(), keys[0], v, time.Minute)
	s.id.set(answer{status: 503})
	if _, den := lookupAs(b, "dave"); den == nil || den.Code != denial.IdentityUnavailable {
		t.Fatalf("tampered entry: %v", den)
	}

	// Bounded: max_entries per identity URL, the oldest written go first.
	s.id.set(answer{status: 200})
	small := s.node(t, true, false, func(o *Config) { o.SharedCache.MaxEntries = 5 })
	for i := range 20 {
		lookupAs(small, fmt.Sprintf("u%02d", i))
	}
	if n := s.entries(t); n != 5 {
		t.Fatalf("%d entries with max_entries 5", n)
	}
	s.id.set(answer{status: 503})
	if res, den := lookupAs(b, "u19"); den != nil || !res.Shared {
		t.Fatalf("the newest entry: %+v %v", res, den)
	}
	if _, den := lookupAs(b, "u00"); den == nil {
		t.Fatal("the oldest entry survived the bound")
	}
}

// Age: an entry lives the writing route's max_stale_seconds in Redis, and a
// reader serves only what is younger than its own, by Redis's clock.
func TestSharedLevelAge(t *testing.T) {
	s := newSharedScene(t)
	a := s.node(t, true, false, func(o *Config) { o.MaxStaleSeconds = 2 })
	strict := s.node(t, true, false, func(o *Config) { o.MaxStaleSeconds = 1 })
	lax := s.node(t, true, false, func(o *Config) { o.MaxStaleSeconds = 60 })
	lookupAs(a, "alice")
	s.id.set(answer{status: 503})
	time.Sleep(1100 * time.Millisecond)
	if _, den := lookupAs(strict, "alice"); den == nil {
		t.Fatal("a reader served an entry older than its max_stale_seconds")
	}
	if res, den := lookupAs(lax, "alice"); den != nil || !res.Shared {
		t.Fatalf("a younger entry: %+v %v", res, den)
	}
	time.Sleep(1000 * time.Millisecond)
	if _, den := lookupAs(lax, "alice"); den == nil {
		t.Fatal("an entry outlived the writer's max_stale_seconds")
	}
	if n := s.entries(t); n != 0 {
		t.Fatalf("%d entries left in Redis past their lifetime", n)
	}
}

// Identity events: a deleted user is never served from the shared level,
// by any node, with events or without. The node that applies the event
// deletes the user's entries and leaves a tombstone that refuses a late
// write (a lookup that began before the event); a node that applied an
// event for a user does not use the shared level for them within the
// window; stale events serve nothing.
func TestSharedLevelAndIdentityEvents(t *testing.T) {
	s := newSharedScene(t)
	pub, err := NewPublisher(s.rdb, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a, b := s.node(t, true, true, nil), s.node(t, true, true, nil)
	plain := s.node(t, true, false, nil) // follows no events
	waitUntil(t, "the followers' first sync", func() bool { return a.ev.f.AwaitFirstSync() && b.ev.f.AwaitFirstSync() })
	lookupAs(a, "alice")
	lookupAs(a, "bob")
	if n := s.entries(t); n != 2 {
		t.Fatalf("%d entries", n)
	}
	if _, err := pub.Publish(context.Background(), Event{Type: UserDeleted, UserID: "alice", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the event applied on both nodes", func() bool { return a.ev.f.Applied() == 1 && b.ev.f.Applied() == 1 })
	a.shared.flush()
	b.shared.flush()
	if n := s.entries(t); n != 1 {
		t.Fatalf("%d entries after alice's deletion, want bob's alone", n)
	}
	// A late write for alice (a node without events, whose lookup may have
	// begun before the deletion) is refused by the tombstone.
	tomb := sharedWrites.Value(plain.shared.label, "tombstoned")
	lookupAs(plain, "alice")
	if sharedWrites.Value(plain.shared.label, "tombstoned") != tomb+1 || s.entries(t) != 1 {
		t.Fatal("a write for a deleted user got past the tombstone")
	}
	s.id.set(answer{status: 503})
	for name, n := range map[string]*Client{"b": b, "plain": plain} {
		n.svc.cache.Purge() // from the shared level only
		if _, den := lookupAs(n, "alice"); den == nil || den.Code != denial.IdentityUnavailable {
			t.Fatalf("node %s served deleted alice: %v", name, den)
		}
		if res, den := lookupAs(n, "bob"); den != nil || !res.Shared {
			t.Fatalf("node %s, bob: %+v %v", name, res, den)
		}
	}

	// A node that applied an event for a user does not use the shared level
	// for them within the window, even for an entry Redis holds.
	b.ev.v.mu.Lock()
	b.ev.v.applied["bob"] = time.Now()
	b.ev.v.mu.Unlock()
	if _, den := lookupAs(b, "bob"); den == nil || !strings.Contains(den.Cause, "identity event for the user is within its window") {
		t.Fatalf("bob with a recent event on B: %v", den)
	}

	// Stale events: nothing from the shared level.
	a.ev.f.Stop()
	time.Sleep(2100 * time.Millisecond)
	a.svc.cache.Purge()
	if _, den := lookupAs(a, "bob"); den == nil || !strings.Contains(den.Cause, "stale") {
		t.Fatalf("stale events on A: %v", den)
	}
}

// The hit rate behind a load balancer: U users, each sending two requests
// while the identity service is up, each to a node picked at random among
// N; then the identity service answers 503 and each user sends one more.
// Local caches alone cover a user only on a node that saw them (expected
// 1-(1-1/N)^2: 100%, 75%, 44% for N = 1, 2, 4); with the shared level every
// user seen by any node is covered.
func TestSharedLevelHitRate(t *testing.T) {
	const users = 500
	s := newSharedScene(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 4} {
		for _, shared := range []bool{false, true} {
			s.id.set(answer{status: 200})
			nodes := make([]*Client, n)
			for i := range nodes {
				nodes[i] = s.node(t, shared, false, nil)
			}
			prefix := fmt.Sprintf("n%d-%v-", n, shared)
			for range 2 {
				for u := range users {
					if _, den := lookupAs(nodes[rng.IntN(n)], fmt.Sprintf("%s%d", prefix, u)); den != nil {
						t.Fatal(den)
					}
				}
			}
			s.id.set(answer{status: 503})
			hits := 0
			for u := range users {
				if res, den := lookupAs(nodes[rng.IntN(n)], fmt.Sprintf("%s%d", prefix, u)); den == nil && res.Cached {
					hits++
				}
			}
			rate := float64(hits) / users
			level := "local only"
			want := 1 - pow(1-1/float64(n), 2)
			if shared {
				level, want = "with the shared level", 1
			}
			t.Logf("N=%d %-21s hit rate on 503: %5.1f%% (expected %5.1f%%)", n, level, 100*rate, 100*want)
			if rate < want-0.06 || rate > want+0.06 {
				t.Errorf("N=%d %s: hit rate %.3f, expected %.3f", n, level, rate, want)
			}
		}
	}
}

func pow(x float64, n int) float64 {
	r := 1.0
	for range n {
		r *= x
	}
	return r
}

// BenchmarkSharedLevel (real redis-server): the background write (seal and
// the write script, one round trip) and the 503 read of the shared level
// (GET and PTTL pipelined, unseal, parse), for a context of about 100 bytes;
// and Redis's memory per entry, index and user set included.
func BenchmarkSharedLevel(b *testing.B) {
	srv := redistest.Start(b)
	rc := redisconn.Config{Addresses: []string{srv.Addr}}
	rdb, err := rc.Client("redis")
	if err != nil {
		b.Fatal(err)
	}
	defer rdb.Close()
	sc := SharedCacheConfig{Redis: rc}
	config.Defaults(&sc)
	l := newSharedLevel(rdb, sc, "http://identity/ctx")
	o := Config{IdentityURL: "http://identity/ctx", Now: time.Now}
	config.Defaults(&o)
	c := &Client{o: o, shared: l}
	raw := []byte(`{"user_id":"7d3e2a10-1c4b-4a5e-9f00-3c2b1a000001","roles":["customer"],"country":"DE","plan":"premium"}`)
	keyOf := func(i int) [32]byte {
		k, _ := c.key(map[string]string{"Authorization": fmt.Sprintf("Bearer token-%d", i)})
		return k
	}
	b.Run("write", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			k := keyOf(i % 10000)
			l.write(k, &Context{Raw: raw, UserID: fmt.Sprintf("user-%d", i%10000)}, 300*time.Second)
			l.flush()
		}
	})
	for i := range 1000 {
		l.write(keyOf(i), &Context{Raw: raw, UserID: fmt.Sprintf("user-%d", i)}, 300*time.Second)
	}
	l.flush()
	b.Run("read", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if e, _ := c.sharedFallback(context.Background(), keyOf(i%1000), "", new(string)); e == nil {
				b.Fatal("miss")
			}
		}
	})
	b.Run("memory", func(b *testing.B) {
		for b.Loop() {
		}
		ctx := context.Background()
		rdb.FlushAll(ctx)
		before, _ := rdb.Info(ctx, "memory").Result()
		const n = 10000
		for i := range n {
			l.write(keyOf(i), &Context{Raw: raw, UserID: fmt.Sprintf("user-%d", i)}, 300*time.Second)
		}
		l.flush()
		after, _ := rdb.Info(ctx, "memory").Result()
		b.ReportMetric(float64(usedMemory(after)-usedMemory(before))/n, "redis-bytes/entry")
	})
}

func usedMemory(info string) int64 {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			var n int64
			fmt.Sscan(v, &n)
			return n
		}
	}
	return 0
}
