package payevents

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/redistest"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 500_000_000, time.UTC)

func TestRevocationRule(t *testing.T) {
	r := NewRevocations()
	r.Apply(Event{Type: Cancellation, CustomerID: "a", At: t0})
	cases := []struct {
		iat  time.Time
		want bool
	}{
		{t0.Add(-time.Hour), true},
		{t0.Truncate(time.Second), true}, // same second as the cancellation: fail closed
		{t0.Truncate(time.Second).Add(time.Second), false},
	}
	for _, c := range cases {
		if got := r.Revoked("a", c.iat); got != c.want {
			t.Errorf("Revoked(iat %v) = %v, want %v", c.iat, got, c.want)
		}
	}
	if r.Revoked("b", t0.Add(-time.Hour)) {
		t.Fatal("another customer revoked")
	}
	// Reactivation: tokens issued later pass; earlier ones stay revoked.
	r.Apply(Event{Type: Reactivation, CustomerID: "a", At: t0.Add(time.Minute)})
	if !r.Revoked("a", t0.Add(-time.Minute)) || r.Revoked("a", t0.Add(2*time.Minute)) {
		t.Fatal("reactivation handled wrongly")
	}
	// An older event never moves the revocation time back.
	r.Apply(Event{Type: Refund, CustomerID: "a", At: t0.Add(-time.Hour)})
	if !r.Revoked("a", t0.Truncate(time.Second)) {
		t.Fatal("older event moved the revocation back")
	}
	r.Prune(t0.Add(time.Second))
	if r.Len() != 0 || r.Revoked("a", t0.Add(-time.Hour)) {
		t.Fatal("prune kept an expired revocation")
	}
}

func TestPublishValidates(t *testing.T) {
	p, err := NewPublisher(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []Event{{Type: "upgrade", CustomerID: "a", At: t0}, {Type: Block, At: t0}, {Type: Block, CustomerID: "a"}} {
		if _, err := p.Publish(context.Background(), e); err == nil {
			t.Errorf("published invalid %+v", e)
		}
	}
	if _, err := NewPublisher(nil, "", 0); err == nil {
		t.Fatal("zero retention accepted")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func realRedis(t *testing.T, extra ...string) (*redistest.Server, *redis.Client) {
	return realRedisB(t, extra...)
}

func realRedisB(tb testing.TB, extra ...string) (*redistest.Server, *redis.Client) {
	srv := redistest.Start(tb, extra...)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	tb.Cleanup(func() { rdb.Close() })
	return srv, rdb
}

func TestReplayOnStartAndFollow(t *testing.T) {
	_, rdb := realRedis(t)
	ctx := context.Background()
	pub, _ := NewPublisher(rdb, "", time.Hour)
	now := time.Now()
	// The replay reads by publication time (stream ids); an event whose own
	// time is older than the window is pruned: no live token can predate it.
	if _, err := pub.Publish(ctx, Event{Type: Cancellation, CustomerID: "old", At: now.Add(-2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, Event{Type: Block, CustomerID: "recent", At: now.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	f := NewFollower(redis.NewClient(&redis.Options{Addr: rdb.Options().Addr}), FollowerOptions{Window: 20 * time.Minute, Block: 100 * time.Millisecond})
	if !f.Stale(time.Second) {
		t.Fatal("a follower that never synced must be stale")
	}
	f.Start()
	defer f.Stop()
	waitFor(t, "replay", func() bool { return !f.Stale(time.Second) })
	if !f.Revocations().Revoked("recent", now.Add(-2*time.Minute)) {
		t.Fatal("event in the window not replayed")
	}
	if f.Revocations().Revoked("old", now.Add(-3*time.Hour)) {
		t.Fatal("event outside the window applied")
	}
	if _, err := pub.Publish(ctx, Event{Type: Refund, CustomerID: "live", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "live event", func() bool { return f.Revocations().Revoked("live", now.Add(-time.Second)) })
}

func TestPublishTrimsBeyondRetention(t *testing.T) {
	_, rdb := realRedis(t)
	ctx := context.Background()
	pub, _ := NewPublisher(rdb, "trim-test", 50*time.Millisecond)
	for i := range 3 {
		if _, err := pub.Publish(ctx, Event{Type: Block, CustomerID: fmt.Sprint(i), At: time.Now()}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(80 * time.Millisecond)
	}
	if n, _ := rdb.XLen(ctx, "trim-test").Result(); n != 1 {
		t.Fatalf("stream holds %d entries; entries published longer than the retention ago must be trimmed", n)
	}
}

// TestNoEventLostAcrossReconnects kills the follower's connection between
// events (CLIENT KILL), publishes while it is away, and restarts the server
// itself (AOF on, so the stream survives), then checks every event applied.
func TestNoEventLostAcrossReconnects(t *testing.T) {
	srv, rdb := realRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	ctx := context.Background()
	pub, _ := NewPublisher(rdb, "", time.Hour)
	f := NewFollower(redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1}), FollowerOptions{Window: time.Hour, Block: 100 * time.Millisecond})
	f.Start()
	defer f.Stop()
	waitFor(t, "sync", func() bool { return !f.Stale(time.Second) })
	publish := func(i int) {
		if _, err := pub.Publish(ctx, Event{Type: Cancellation, CustomerID: fmt.Sprintf("c%d", i), At: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	publish(0)
	waitFor(t, "c0", func() bool { return f.Applied() == 1 })
	for round := 1; round <= 3; round++ {
		if err := rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
			t.Fatal(err)
		}
		publish(round*10 + 1)
		publish(round*10 + 2)
	}
	waitFor(t, "all events after kills", func() bool { return f.Applied() == 7 })

	srv.Restart(t) // same port, data from the AOF
	rdb2 := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb2.Close()
	pub2, _ := NewPublisher(rdb2, "", time.Hour)
	if _, err := pub2.Publish(ctx, Event{Type: Block, CustomerID: "after-restart", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "event after a server restart", func() bool { return f.Applied() == 8 })
	for _, c := range []string{"c0", "c11", "c12", "c21", "c22", "c31", "c32", "after-restart"} {
		if !f.Revocations().Revoked(c, time.Now().Add(-time.Minute)) {
			t.Errorf("%s lost", c)
		}
	}
}

func TestStaleWhenRedisIsGone(t *testing.T) {
	srv, _ := realRedis(t)
	f := NewFollower(redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1}), FollowerOptions{Window: time.Hour, Block: 50 * time.Millisecond})
	f.Start()
	defer f.Stop()
	waitFor(t, "sync", func() bool { return !f.Stale(time.Second) })
	srv.Stop()
	waitFor(t, "staleness", func() bool { return f.Stale(300 * time.Millisecond) })
	srv.Restart(t)
	waitFor(t, "recovery", func() bool { return !f.Stale(300 * time.Millisecond) })
}
