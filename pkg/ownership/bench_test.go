package ownership

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/claims"
	"github.com/subgate/subgate/pkg/redistest"
)

// latencies collects per-op durations to report p50/p99 next to ns/op.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) { l.mu.Lock(); l.d = append(l.d, d); l.mu.Unlock() }

func (l *latencies) report(b *testing.B) {
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	b.ReportMetric(float64(l.d[len(l.d)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(l.d[len(l.d)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkDecideRealRedis measures the plugin's decision against a real
// redis-server next to a raw go-redis HGET of the same field, sequential
// and with concurrency (b.RunParallel, GOMAXPROCS goroutines x 8).
func BenchmarkDecideRealRedis(b *testing.B) {
	srv := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 64})
	defer rdb.Close()
	seed(b, rdb, "DE", 1234, alice)
	d, err := NewWith(Config{PathPatterns: []string{"/subscriptions/{subscription_id}/deliveries"}, TimeoutMs: 1000}, rdb)
	if err != nil {
		b.Fatal(err)
	}
	v := &claims.Verified{CustomerID: alice, Country: "DE"}
	ctx := context.Background()
	l := Layout{Prefix: DefaultPrefix}
	key, field := l.Key("DE", 1234), l.Field(1234)
	ops := map[string]func() error{
		"decide": func() error {
			_, den := d.lookup(ctx, "/subscriptions/1234/deliveries", v)
			if den != nil {
				return den
			}
			return nil
		},
		"raw-hget": func() error { return rdb.HGet(ctx, key, field).Err() },
	}
	for _, name := range []string{"decide", "raw-hget"} {
		op := ops[name]
		b.Run(name+"/sequential", func(b *testing.B) {
			var l latencies
			b.ReportAllocs()
			for b.Loop() {
				t0 := time.Now()
				if err := op(); err != nil {
					b.Fatal(err)
				}
				l.add(time.Since(t0))
			}
			l.report(b)
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			var l latencies
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					t0 := time.Now()
					if err := op(); err != nil {
						b.Error(err)
						return
					}
					l.add(time.Since(t0))
				}
			})
			l.report(b)
		})
	}
}
