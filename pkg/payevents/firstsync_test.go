package payevents

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// followerClient is a client with the plugin's default Redis timeouts
// (redisconn.Config defaults), as Shared builds for a follower.
func followerClient(t testing.TB, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond, MaxRetries: 1})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestFirstCheckAfterStartSeesReplayedState: a check made right after
// Start, as Kong's first request after an instance start makes it, gets
// the replayed state (an event published before the start is applied),
// not a stale answer. Without the first-sync wait Bound.Stale is true here.
func TestFirstCheckAfterStartSeesReplayedState(t *testing.T) {
	_, rdb := realRedis(t)
	pub, _ := NewPublisher(rdb, "", time.Hour)
	now := time.Now()
	if _, err := pub.Publish(context.Background(), Event{Type: Block, CustomerID: "before", At: now.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	f := NewFollower(followerClient(t, rdb.Options().Addr), FollowerOptions{Window: time.Hour, Block: 50 * time.Millisecond})
	b := Bound{F: f, After: 10 * time.Second}
	f.Start()
	defer f.Stop()
	if b.Stale() {
		t.Fatal("first check after start answered stale with Redis up")
	}
	if !f.Revocations().Revoked("before", now.Add(-2*time.Minute)) {
		t.Fatal("event published before the start not applied before the first answer")
	}
	if !f.AwaitFirstSync() {
		t.Fatal("AwaitFirstSync false after a sync")
	}
}

// TestConcurrentFirstChecksShareOneReplay: 32 checks arriving together
// right after Start all get the replayed state, and Redis sees one XRANGE:
// they waited for the follower's replay instead of reading for themselves.
func TestConcurrentFirstChecksShareOneReplay(t *testing.T) {
	_, rdb := realRedis(t)
	pub, _ := NewPublisher(rdb, "", time.Hour)
	now := time.Now()
	if _, err := pub.Publish(context.Background(), Event{Type: Refund, CustomerID: "before", At: now.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ConfigResetStat(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	f := NewFollower(followerClient(t, rdb.Options().Addr), FollowerOptions{Window: time.Hour, Block: 50 * time.Millisecond})
	b := Bound{F: f, After: 10 * time.Second}
	begin := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 32)
	for range 32 {
		wg.Go(func() {
			<-begin
			if b.Stale() {
				errs <- "stale"
			} else if !f.Revocations().Revoked("before", now.Add(-2*time.Minute)) {
				errs <- "revocation missing"
			}
		})
	}
	f.Start()
	defer f.Stop()
	close(begin)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error("a first check got:", e)
	}
	stats, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stats, "cmdstat_xrange:calls=1,") {
		t.Fatalf("want exactly one XRANGE (one shared replay); commandstats:\n%s", stats)
	}
}

// TestReplayCutShortIsNotCaughtUp: a follower whose replay was cut short
// resumes with XREAD from the last id seen; an answer that holds a full
// page (more may follow) is a sign of life but not a complete catch-up, so
// the state stays stale until an answer reaches the stream's end.
func TestReplayCutShortIsNotCaughtUp(t *testing.T) {
	_, rdb := realRedis(t)
	ctx := context.Background()
	at := time.Now().UnixMilli()
	p := rdb.Pipeline()
	for i := range readCount + 500 {
		p.XAdd(ctx, &redis.XAddArgs{Stream: DefaultStream, Values: []any{"type", "block", "customer", fmt.Sprint("c", i), "at", strconv.FormatInt(at, 10)}})
	}
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	f := NewFollower(followerClient(t, rdb.Options().Addr), FollowerOptions{Window: time.Hour, Block: 50 * time.Millisecond})
	f.lastID = "0-0" // as after a replay that died before its first page
	if err := f.read(ctx); err != nil {
		t.Fatal(err)
	}
	if f.Applied() != readCount || f.LastContact().IsZero() {
		t.Fatalf("first read applied %d", f.Applied())
	}
	if !f.Stale(time.Hour) {
		t.Fatal("a follower with entries still unread counts as caught up")
	}
	if err := f.read(ctx); err != nil {
		t.Fatal(err)
	}
	if f.Applied() != readCount+500 || f.Stale(time.Hour) {
		t.Fatalf("after reading to the end: applied %d, stale %v", f.Applied(), f.Stale(time.Hour))
	}
}

// TestFirstSyncBoundWhenRedisDoesNotAnswer: with Redis refusing
// connections, or accepting and never answering, the first check waits at
// most FirstSync and then reports stale (fail closed), never fresh.
func TestFirstSyncBoundWhenRedisDoesNotAnswer(t *testing.T) {
	refused := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return addr
	}
	silent := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var conns []net.Conn
		t.Cleanup(func() {
			l.Close()
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				c.Close()
			}
		})
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c) // held open, never answered
				mu.Unlock()
			}
		}()
		return l.Addr().String()
	}
	for name, addr := range map[string]func(*testing.T) string{"refused": refused, "silent": silent} {
		t.Run(name, func(t *testing.T) {
			const firstSync = 300 * time.Millisecond
			f := NewFollower(followerClient(t, addr(t)), FollowerOptions{Window: time.Hour, Block: 50 * time.Millisecond, FirstSync: firstSync})
			b := Bound{F: f, After: 10 * time.Second}
			f.Start()
			defer f.Stop()
			start := time.Now()
			if !b.Stale() {
				t.Fatal("fresh with no Redis")
			}
			if took := time.Since(start); took > firstSync+2*time.Second {
				t.Fatalf("first check took %v; the bound is %v", took, firstSync)
			}
			if f.AwaitFirstSync() || !b.Stale() {
				t.Fatal("still stale expected after the bound")
			}
		})
	}
}

// TestUnstartedFollowerDoesNotWait: a follower never started is stale and
// nothing waits for it.
func TestUnstartedFollowerDoesNotWait(t *testing.T) {
	f := NewFollower(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), FollowerOptions{Window: time.Hour, FirstSync: time.Hour})
	if f.AwaitFirstSync() || !(Bound{F: f, After: time.Second}).Stale() {
		t.Fatal("an unstarted follower is not stale")
	}
}
