package payevents

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/redisconn"
	"github.com/subgate/subgate/pkg/redistest"
)

// waitLong is waitFor with room for a cluster failover (detection after
// cluster-node-timeout, then the replica's election).
func waitLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The publisher and the follower on a real 3+3 Redis Cluster, through
// redisconn's cluster client: events flow; the stream's primary is killed
// and its replica promoted; the follower resumes from its last id and
// every event confirmed by a replica (WaitForReplicas) is applied, by the
// running follower and by one started after the failover. An event the
// primary acknowledged without a replica's copy is lost in the failover:
// the reason the publisher waits.
func TestEventsAcrossClusterFailover(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{Primaries: 3, Replicas: 1})
	ctx := context.Background()
	rc := redisconn.Config{Addresses: c.Seeds()[:1], Cluster: true}
	client := func() redis.UniversalClient {
		rdb, err := rc.Client("redis")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rdb.Close() })
		return rdb
	}
	const stream = "subgate:test:events"
	plain, _ := NewPublisher(client(), stream, time.Hour)
	durable, err := plain.WaitForReplicas(1, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	f := NewFollower(client(), FollowerOptions{Stream: stream, Window: time.Hour, Block: 100 * time.Millisecond})
	f.Start()
	defer f.Stop()
	waitLong(t, "sync", func() bool { return !f.Stale(time.Second) })
	ev := func(customer string) Event { return Event{Type: Cancellation, CustomerID: customer, At: time.Now()} }
	revoked := func(f *Follower, customer string) bool {
		return f.Revocations().Revoked(customer, time.Now().Add(-time.Hour))
	}

	if _, err := durable.Publish(ctx, ev("before")); err != nil {
		t.Fatal(err)
	}
	waitLong(t, "before", func() bool { return revoked(f, "before") })

	// The stream's replica stops taking writes; the primary still
	// acknowledges them. The durable publisher says the event is not safe.
	p, err := c.PrimaryFor(stream)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := c.ReplicaOf(p)
	if err != nil || rep == nil {
		t.Fatalf("no replica of the stream's primary: %v", err)
	}
	if err := c.Pause(rep); err != nil {
		t.Fatal(err)
	}
	// Cut the replication link too: what the primary wrote into the
	// socket before would still reach the replica when it resumes.
	pc := redis.NewClient(&redis.Options{Addr: p.Addr})
	if err := pc.Do(ctx, "CLIENT", "KILL", "TYPE", "replica").Err(); err != nil {
		t.Fatal(err)
	}
	pc.Close()
	if _, err := plain.Publish(ctx, ev("acked-unreplicated")); err != nil {
		t.Fatal(err)
	}
	if _, err := durable.Publish(ctx, ev("unconfirmed")); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("durable publish with the replica hung: %v, want ErrNotReplicated", err)
	}
	killed := time.Now()
	c.Kill(p)
	if err := c.Resume(rep); err != nil {
		t.Fatal(err)
	}
	// Once the replica has taken over, the killed node comes back as its
	// replica: with one replica per primary there is none to confirm an
	// event until then.
	if err := c.WaitPromoted(stream, rep, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	promoted := time.Since(killed)
	if err := c.Rejoin(p); err != nil {
		t.Fatal(err)
	}
	// The payment service retries what was not confirmed, until it is (a
	// repeated event changes nothing).
	retries := 0
	publish := func(customer string) {
		for {
			_, err := durable.Publish(ctx, ev(customer))
			if err == nil {
				return
			}
			if retries++; time.Since(killed) > 20*time.Second {
				t.Fatalf("publish %s after failover: %v", customer, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	publish("unconfirmed")
	published := time.Since(killed)
	publish("after")
	waitLong(t, "after", func() bool { return revoked(f, "after") })
	t.Logf("stream primary killed: replica promoted after %v; publisher confirmed again after %v (%d failed tries); follower applied the next event after %v",
		promoted.Round(time.Millisecond), published.Round(time.Millisecond), retries, time.Since(killed).Round(time.Millisecond))
	for _, cu := range []string{"before", "unconfirmed", "after"} {
		if !revoked(f, cu) {
			t.Errorf("running follower: %s not applied", cu)
		}
	}

	// A follower started now replays the new primary's stream.
	g := NewFollower(client(), FollowerOptions{Stream: stream, Window: time.Hour, Block: 100 * time.Millisecond})
	g.Start()
	defer g.Stop()
	waitLong(t, "second follower sync", func() bool { return !g.Stale(time.Second) })
	for _, cu := range []string{"before", "unconfirmed", "after"} {
		if !revoked(g, cu) {
			t.Errorf("follower started after the failover: %s missing from the stream", cu)
		}
	}
	if revoked(g, "acked-unreplicated") {
		t.Fatal("the event no replica held survived the failover: the loss this test shows did not happen")
	}
}

// BenchmarkStreamFanout: the revocation stream is one key, so one shard
// carries it all. It measures how many events per second that shard takes
// from 8 concurrent publishers (XADD with the exact MINID trim) while
// delivering each one to 16 followers, the plugin servers: ns/op is per
// event, until every follower has applied it; events/s is reported.
func BenchmarkStreamFanout(b *testing.B) {
	c := redistest.StartCluster(b, redistest.ClusterOptions{Primaries: 3, Replicas: 1})
	rc := redisconn.Config{Addresses: c.Seeds(), Cluster: true, PoolSize: 16}
	pubc, err := rc.Client("redis")
	if err != nil {
		b.Fatal(err)
	}
	defer pubc.Close()
	stream := fmt.Sprintf("bench-fanout-%d", time.Now().UnixNano())
	pub, _ := NewPublisher(pubc, stream, time.Hour)
	var fs []*Follower
	for i := 0; i < 16; i++ {
		rdb, err := rc.Client("redis")
		if err != nil {
			b.Fatal(err)
		}
		defer rdb.Close()
		f := NewFollower(rdb, FollowerOptions{Stream: stream, Window: time.Hour, Block: 100 * time.Millisecond})
		f.Start()
		defer f.Stop()
		fs = append(fs, f)
	}
	for _, f := range fs {
		for f.Stale(time.Second) {
			time.Sleep(time.Millisecond)
		}
	}
	ctx := context.Background()
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := pub.Publish(ctx, Event{Type: Cancellation, CustomerID: "c", At: time.Now()}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, f := range fs {
		for f.Applied() < int64(b.N) {
			time.Sleep(100 * time.Microsecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}
