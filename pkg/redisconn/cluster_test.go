package redisconn

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/redistest"
)

// Cluster mode is what the config says, never guessed from the number of
// addresses, and the combinations that cannot mean anything are refused.
func TestClusterModeIsExplicit(t *testing.T) {
	for name, tc := range map[string]struct {
		c    Config
		want string
	}{
		"cluster and sentinel":                  {Config{Addresses: []string{"a:1"}, Cluster: true, MasterName: "m"}, "cluster and master_name exclude each other"},
		"cluster with db":                       {Config{Addresses: []string{"a:1"}, Cluster: true, DB: 2}, "config: db: Redis Cluster has database 0 only"},
		"an address without port":               {Config{Addresses: []string{"redis"}}, "config.addresses[1]: expected host:port"},
		"port 0":                                {Config{Addresses: []string{"redis:0"}}, "the port is not 1-65535"},
		"an empty address":                      {Config{Addresses: []string{"a:1", ""}, Cluster: true}, "addresses[2]"},
		"a vault reference and a password file": {Config{Addresses: []string{"a:1"}, Password: "{vault://env/P}", PasswordFile: "/p"}, "the vault reference was not resolved"},
		"replicas, no cluster":                  {Config{Addresses: []string{"a:1"}, ReadFromReplicas: true}, "read_from_replicas needs cluster: true"},
		"two addresses, no mode":                {Config{Addresses: []string{"a:1", "b:1"}}, "set cluster: true for Cluster seeds or master_name for Sentinels"},
	} {
		_, err := Shared(tc.c, "redis")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", name, err, tc.want)
		}
	}
	for name, tc := range map[string]struct {
		c       Config
		cluster bool
	}{
		"one seed, cluster": {Config{Addresses: []string{"a:1"}, Cluster: true}, true},
		"one node":          {Config{Addresses: []string{"a:1"}}, false},
		"sentinels":         {Config{Addresses: []string{"a:1", "b:1"}, MasterName: "m"}, false},
	} {
		rdb, err := tc.c.Client("redis")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, ok := rdb.(*redis.ClusterClient); ok != tc.cluster {
			t.Errorf("%s: cluster client %v, want %v", name, ok, tc.cluster)
		}
		rdb.Close()
	}
	// read_from_replicas reaches the shared (request-path) client only:
	// Client, which the event followers use, reads primaries, since
	// go-redis sends XREAD (a read-only command) to a replica otherwise.
	rc := Config{Addresses: []string{"a:1"}, Cluster: true, ReadFromReplicas: true}
	follower, err := rc.Client("redis")
	if err != nil {
		t.Fatal(err)
	}
	defer follower.Close()
	shared, err := Shared(rc, "redis")
	if err != nil {
		t.Fatal(err)
	}
	if follower.(*redis.ClusterClient).Options().ReadOnly || !shared.(*redis.ClusterClient).Options().ReadOnly {
		t.Fatal("Client must read primaries; Shared must honour read_from_replicas")
	}
}

// Against a real 3+3 cluster, from one seed address: reads and writes
// reach every shard; after a primary is killed, the shared client finds
// the promoted replica as soon as the cluster has one, not after go-redis'
// 60 s slot-map reload (reloadOnFailure); replica reads keep answering
// while a primary hangs, primaries-only reads do not.
func TestClusterClient(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{Primaries: 3, Replicas: 1})
	ctx := context.Background()
	cfg := Config{Addresses: c.Seeds()[:1], Cluster: true}
	rdb, err := Shared(cfg, "redis")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ { // 300 keys land on all three shards
		if err := rdb.Set(ctx, "k"+string(rune('a'+i%26))+strings.Repeat("x", i/26), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	const key = "subgate:test:failover"
	if err := rdb.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	p, err := c.PrimaryFor(key)
	if err != nil {
		t.Fatal(err)
	}
	// Replica reads: measure how far a replica trails its primary here
	// (the README's staleness figure), and prove reads go to the replica by
	// hanging the primary.
	rcfg := cfg
	rcfg.ReadFromReplicas = true
	rr, err := Shared(rcfg, "redis")
	if err != nil {
		t.Fatal(err)
	}
	if err := rr.Get(ctx, key).Err(); err != nil { // warm: slot map and command table loaded
		t.Fatal(err)
	}
	rep, err := c.ReplicaOf(p)
	if err != nil || rep == nil {
		t.Fatalf("no replica of %s: %v", p.Addr, err)
	}
	repc := redis.NewClient(&redis.Options{Addr: rep.Addr, OnConnect: func(ctx context.Context, cn *redis.Conn) error {
		return cn.ReadOnly(ctx).Err()
	}})
	defer repc.Close()
	var worst time.Duration
	for i := 0; i < 200; i++ {
		v := time.Now().Format(time.RFC3339Nano)
		if err := rdb.Set(ctx, key, v, 0).Err(); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		for {
			got, err := repc.Get(ctx, key).Result()
			if err == nil && got == v {
				break
			}
			if time.Since(t0) > 5*time.Second {
				t.Fatalf("replica never saw write %d", i)
			}
		}
		if d := time.Since(t0); d > worst {
			worst = d
		}
	}
	t.Logf("replica lag: worst of 200 writes until the replica answered the new value: %v", worst)
	if err := c.Pause(p); err != nil {
		t.Fatal(err)
	}
	_, replicaErr := rr.Get(ctx, key).Result()
	_, primaryErr := rdb.Get(ctx, key).Result()
	if err := c.Resume(p); err != nil {
		t.Fatal(err)
	}
	if replicaErr != nil || primaryErr == nil {
		t.Fatalf("primary hung: replica read err %v (want none), primary read err %v (want a timeout)", replicaErr, primaryErr)
	}

	// Failover: the shared client recovers without a new client.
	if err := c.WaitHealthy(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	c.Kill(p)
	var fails int
	for {
		_, err := rdb.Get(ctx, key).Result()
		if err == nil {
			break
		}
		fails++
		if time.Since(killed) > 30*time.Second { // go-redis alone: up to 60 s
			t.Fatalf("no answer 30 s after the kill: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("primary killed: first answer after %v, %d failed reads", time.Since(killed).Round(time.Millisecond), fails)
}
