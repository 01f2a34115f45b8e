package payevents

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/metrics"
	"github.com/subgate/subgate/pkg/redisconn"
)

// The shared followers expose, per stream, the seconds since Redis last
// answered (+Inf when it never has), the events applied and the state they
// left (two revoked customers); the Redis
// password never reaches the exposition.
func TestFollowerMetrics(t *testing.T) {
	m := miniredis.RunT(t)
	m.RequireAuth("pw-0123456789")
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }

	rdb := redis.NewClient(&redis.Options{Addr: m.Addr(), Password: "pw-0123456789"})
	defer rdb.Close()
	pub, err := NewPublisher(rdb, "metrics-events", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"a", "b"} {
		if _, err := pub.Publish(context.Background(), Event{Type: Cancellation, CustomerID: c, At: clock()}); err != nil {
			t.Fatal(err)
		}
	}
	f, err := Shared(redisconn.Config{Addresses: []string{m.Addr()}, Password: "pw-0123456789"},
		FollowerOptions{Stream: "metrics-events", Window: time.Hour, Block: 20 * time.Millisecond, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	down, err := Shared(redisconn.Config{Addresses: []string{"127.0.0.1:1"}},
		FollowerOptions{Stream: "metrics-unreachable", Window: time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	down.Stop()
	for deadline := time.Now().Add(5 * time.Second); f.Applied() < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("applied %d events", f.Applied())
		}
	}
	f.Stop() // no more contact: the lag is the clock's advance
	now.Add(int64(30 * time.Second))

	out := metrics.Exposition()
	if strings.Contains(out, "pw-0123456789") {
		t.Fatalf("the Redis password reached the exposition:\n%s", out)
	}
	for _, want := range []string{
		"# TYPE subgate_revocation_follower_lag_seconds gauge",
		`subgate_revocation_follower_lag_seconds{stream="metrics-events"} 30`,
		`subgate_revocation_follower_lag_seconds{stream="metrics-unreachable"} +Inf`,
		"# TYPE subgate_revocation_events_applied_total counter",
		`subgate_revocation_events_applied_total{stream="metrics-events"} 2`,
		`subgate_revocation_events_applied_total{stream="metrics-unreachable"} 0`,
		"# TYPE subgate_stream_state_entries gauge",
		`subgate_stream_state_entries{stream="metrics-events"} 2`,
		`subgate_stream_state_entries{stream="metrics-unreachable"} 0`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}
