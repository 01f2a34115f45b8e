package payevents

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// recorder is a Handler of another kind than Revocations: what the
// identity events use the same follower for.
type recorder struct {
	mu     sync.Mutex
	seen   []string
	pruned time.Time
}

func (r *recorder) Handle(m redis.XMessage) error {
	if m.Values["bad"] != nil {
		return errors.New("not understood")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, m.Values["v"].(string))
	return nil
}

func (r *recorder) Prune(before time.Time) { r.mu.Lock(); r.pruned = before; r.mu.Unlock() }

func (r *recorder) got() ([]string, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...), r.pruned
}

// TestFollowAnyHandler: the follower hands every entry, replayed or live,
// to its handler in order, skips (and does not count) what the handler
// refuses, and prunes it at the window's start.
func TestFollowAnyHandler(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	pub, _ := NewPublisher(rdb, "other-kind", time.Hour)
	if _, err := pub.Append(ctx, time.Now(), "v", "before-start"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	h := &recorder{}
	f := Follow(redis.NewClient(&redis.Options{Addr: m.Addr()}), FollowerOptions{Stream: "other-kind", Window: time.Hour,
		Block: 20 * time.Millisecond, Now: func() time.Time { return now }}, h)
	if f.Revocations() != nil || f.Handler() != h {
		t.Fatal("a follower of another kind has no Revocations, and its own handler")
	}
	f.Start()
	defer f.Stop()
	if !f.AwaitFirstSync() {
		t.Fatal("no first sync")
	}
	if _, err := pub.Append(ctx, time.Now(), "bad", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Append(ctx, time.Now(), "v", "live"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "live entry", func() bool { s, _ := h.got(); return len(s) == 2 })
	seen, pruned := h.got()
	if seen[0] != "before-start" || seen[1] != "live" || f.Applied() != 2 {
		t.Fatalf("seen %v, applied %d", seen, f.Applied())
	}
	if !pruned.Equal(now.Add(-time.Hour)) {
		t.Fatalf("pruned at %v, want the window's start %v", pruned, now.Add(-time.Hour))
	}
}
