package redistest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A 3+3 cluster starts with every slot served, a replica per primary, and
// a killed primary is replaced by its replica.
func TestClusterStartsAndFailsOver(t *testing.T) {
	c := StartCluster(t, ClusterOptions{Primaries: 3, Replicas: 1})
	ctx := context.Background()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Seeds()})
	defer func() { rdb.Close() }()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	ps, err := c.Primaries()
	if err != nil || len(ps) != 3 {
		t.Fatalf("primaries %v %v", ps, err)
	}
	p, err := c.PrimaryFor("k")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := c.ReplicaOf(p)
	if err != nil || rep == nil {
		t.Fatalf("replica of %s: %v %v", p.Addr, rep, err)
	}
	// Replication is asynchronous: without WAIT (on the connection that
	// wrote) a write acknowledged just before the kill may be lost with the
	// primary.
	pc := redis.NewClient(&redis.Options{Addr: p.Addr, PoolSize: 1})
	if err := pc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := pc.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n < 1 {
		t.Fatalf("WAIT: %d replicas, %v", n, err)
	}
	pc.Close()
	c.Kill(p)
	if err := c.WaitHealthy(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	np, err := c.PrimaryFor("k")
	if err != nil || np != rep {
		t.Fatalf("after failover k is on %v, want the replica %s (%v)", np, rep.Addr, err)
	}
	// A new client: go-redis alone reloads its slot map only every 60 s
	// (pkg/redisconn adds the reload on failure).
	rdb.Close()
	rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Seeds()})
	if v, err := rdb.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("get after failover: %q %v", v, err)
	}
	// The old primary rejoins as a replica; a slot moves with its key.
	if err := c.Rejoin(p); err != nil {
		t.Fatal(err)
	}
	slot, _ := c.Slot("k")
	var dst *Server
	ps, _ = c.Primaries()
	for _, s := range ps {
		if s != np {
			dst = s
		}
	}
	if err := c.MoveSlot(slot, dst, 10, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.PrimaryFor("k"); got != dst {
		t.Fatalf("slot %d not moved to %s", slot, dst.Addr)
	}
	if v, err := rdb.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("get after move: %q %v", v, err)
	}
	if err := c.WaitHealthy(20 * time.Second); err != nil {
		t.Fatal(err)
	}
}
