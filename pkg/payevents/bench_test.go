package payevents

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// BenchmarkPropagation measures the time from a cancellation's publication
// (the payment service calling XADD) to the moment the follower's state rejects the customer's
// older tokens, over b.N events, against a real redis-server on loopback.
// p50/p99 are reported next to ns/op (the goal is p99 under 50 ms).
func BenchmarkPropagation(b *testing.B) {
	_, rdb := realRedisB(b)
	pub, _ := NewPublisher(rdb, "bench-events", time.Hour)
	f := NewFollower(redis.NewClient(&redis.Options{Addr: rdb.Options().Addr}), FollowerOptions{Stream: "bench-events", Window: time.Hour})
	f.Start()
	defer f.Stop()
	for f.Stale(time.Second) {
		time.Sleep(time.Millisecond)
	}
	ctx := context.Background()
	issued := time.Now().Add(-time.Minute)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		customer := fmt.Sprintf("bench-%d", i)
		t0 := time.Now()
		if _, err := pub.Publish(ctx, Event{Type: Cancellation, CustomerID: customer, At: t0}); err != nil {
			b.Fatal(err)
		}
		for !f.Revocations().Revoked(customer, issued) {
			time.Sleep(20 * time.Microsecond)
			if time.Since(t0) > 5*time.Second {
				b.Fatalf("event %d not applied in 5s", i)
			}
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}
