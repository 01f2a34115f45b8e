package payevents

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/subgate/subgate/pkg/health"
	"github.com/subgate/subgate/pkg/redisconn"
)

// A shared follower registers its readiness check (pkg/health): ready once
// it has caught up and while Redis answers it, not ready past readyAfter
// without an answer.
func TestSharedFollowerReportsReadiness(t *testing.T) {
	m := miniredis.RunT(t)
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	f, err := SharedOf("payment", redisconn.Config{Addresses: []string{m.Addr()}},
		FollowerOptions{Stream: "health-events", Window: time.Hour, Block: 20 * time.Millisecond, Now: clock}, func() Handler { return NewRevocations() })
	if err != nil {
		t.Fatal(err)
	}
	name := "stream health-events (payment events) on " + m.Addr()
	check := func() health.Result {
		res, _ := health.Ready(context.Background())
		for _, r := range res {
			if r.Name == name {
				return r
			}
		}
		t.Fatalf("no check %q in %v", name, res)
		return health.Result{}
	}
	f.AwaitFirstSync()
	if r := check(); r.Err != nil {
		t.Fatalf("a caught-up follower: %v", r.Err)
	}
	f.Stop() // no more contact
	now.Add(int64(readyAfter + time.Second))
	if r := check(); r.Err == nil || !strings.Contains(r.Err.Error(), "no answer from Redis for 10s") {
		t.Fatalf("a silent follower: %v", r.Err)
	}
}
