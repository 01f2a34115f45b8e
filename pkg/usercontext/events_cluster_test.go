package usercontext

import (
	"context"
	"testing"
	"time"

	"github.com/subgate/subgate/pkg/redisconn"
	"github.com/subgate/subgate/pkg/redistest"
)

// Identity events on a real 3+3 Redis Cluster through redisconn's cluster
// client: a deletion published with a replica's confirmation evicts; the
// stream's primary is killed and its replica promoted; the route's follower
// carries on, so a block published after the failover evicts too, and
// neither user's cached context is served on a 503 afterwards.
func TestIdentityEventsOnCluster(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{Primaries: 3, Replicas: 1})
	rc := redisconn.Config{Addresses: c.Seeds()[:1], Cluster: true}
	rdb, err := rc.Client("redis")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	plain, err := NewPublisher(rdb, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := plain.WaitForReplicas(1, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	id := newIdentity(t, answer{status: 200})
	route := client(t, id.srv.URL, func(o *Config) {
		o.MaxAttempts = 2
		o.Events = &EventsConfig{Redis: rc, StaleAfterSeconds: 10}
	})
	cache(t, route, "u1", "u2", "u3")
	publish := func(typ EventType, user string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for { // the identity service retries an unconfirmed publish
			_, err := pub.Publish(context.Background(), Event{Type: typ, UserID: user, At: time.Now()})
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("publish %s %s: %v", typ, user, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	publish(UserDeleted, "u1", 5*time.Second)
	waitUntil(t, "u1's eviction", func() bool { return !holds(route, "u1") })

	primary, err := c.PrimaryFor(DefaultEventsStream)
	if err != nil {
		t.Fatal(err)
	}
	replica, err := c.ReplicaOf(primary)
	if err != nil || replica == nil {
		t.Fatalf("no replica of the stream's primary: %v", err)
	}
	killed := time.Now()
	c.Kill(primary)
	// Confirmation needs a replica: the promoted one gets its own when the
	// killed node rejoins under it.
	if err := c.WaitPromoted(DefaultEventsStream, replica, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.Rejoin(primary); err != nil {
		t.Fatal(err)
	}
	publish(UserBlocked, "u2", 20*time.Second)
	waitUntil(t, "u2's eviction after the failover", func() bool { return !holds(route, "u2") })
	t.Logf("failover: promotion and the block applied %v after the kill", time.Since(killed).Round(time.Millisecond))

	id.set(answer{status: 503})
	for user, want := range map[string]bool{"u1": false, "u2": false, "u3": true} {
		if ok, cause := served(t, route, user); ok != want {
			t.Errorf("%s served from the cache: %v, want %v (cause %q)", user, ok, want, cause)
		}
	}
}

// The shared level on a real Redis Cluster: one identity URL's keys share a
// hash tag, so its scripts (write within the bound, an event's deletion and
// tombstone) run in one slot; a user seen by node A serves node B on a 503,
// and a deleted user serves no node.
func TestSharedLevelOnCluster(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{Primaries: 3})
	s := sceneOn(t, redisconn.Config{Addresses: c.Seeds()[:1], Cluster: true})
	a, b := s.node(t, true, true, nil), s.node(t, true, true, nil)
	waitUntil(t, "the followers' first sync", func() bool { return a.ev.f.AwaitFirstSync() && b.ev.f.AwaitFirstSync() })
	for _, u := range []string{"alice", "bob", "carol"} {
		lookupAs(a, u)
	}
	if n := s.entries(t); n != 3 {
		t.Fatalf("%d entries on the cluster", n)
	}
	pub, err := NewPublisher(s.rdb, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(context.Background(), Event{Type: UserBlocked, UserID: "alice", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the event applied", func() bool { return a.ev.f.Applied() == 1 && b.ev.f.Applied() == 1 })
	a.shared.flush()
	b.shared.flush()
	s.id.set(answer{status: 503})
	if _, den := lookupAs(b, "alice"); den == nil {
		t.Fatal("blocked alice served from the shared level")
	}
	for _, u := range []string{"bob", "carol"} {
		if res, den := lookupAs(b, u); den != nil || !res.Shared {
			t.Fatalf("%s on B: %+v %v", u, res, den)
		}
	}
	if n := s.entries(t); n != 2 {
		t.Fatalf("%d entries after the block, want 2", n)
	}
}
