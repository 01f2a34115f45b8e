package ownership

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/redisconn"
	"github.com/subgate/subgate/pkg/redistest"
)

// clusterCountries are the countries the spread test writes, ids 1..n/10
// in each: subscription ids are per country, so every country repeats the
// same id range (the worst case for spreading: equal bucket numbers).
var clusterCountries = []string{"DE", "FR", "GB", "US", "NL", "BE", "AT", "CH", "AU", "CA"}

// pairCSV writes n pairs as the import's CSV, with a header.
func pairCSV(w *io.PipeWriter, n int) {
	fmt.Fprintln(w, "country,subscription_id,customer_uuid")
	per := n / len(clusterCountries)
	for _, c := range clusterCountries {
		for id := 1; id <= per; id++ {
			fmt.Fprintf(w, "%s,%d,%08x-0000-4000-8000-%012x\n", c, id, id, id)
		}
	}
	w.Close()
}

// The writer (Put, Import) and the reader (Lookup, Owns) against a real
// 3+3 Redis Cluster through redisconn's cluster client, and the layout's
// spread: n pairs imported from CSV, then keys per slot and pairs per
// primary counted on the nodes. n is 100,000 in `make test` (seconds);
// SUBGATE_CLUSTER_PAIRS=1000000 gives the README's figures (a minute
// under -race).
func TestStoreOnCluster(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{Primaries: 3, Replicas: 1})
	ctx := context.Background()
	rdb, err := redisconn.Config{Addresses: c.Seeds()[:1], Cluster: true}.Client("redis")
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	s := NewStore(rdb, "")

	a, b := mustUUID(t, alice), mustUUID(t, bob)
	if err := s.Put(ctx, "DE", 1234, a); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "FR", 1234, b); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Owns(ctx, "DE", 1234, a); !ok || err != nil {
		t.Fatalf("alice owns DE 1234: %v %v", ok, err)
	}
	if ok, err := s.Owns(ctx, "FR", 1234, a); ok || err != nil {
		t.Fatalf("alice owns FR 1234: %v %v", ok, err)
	}
	if err := s.Delete(ctx, "DE", 1234); err != nil {
		t.Fatal(err)
	}
	if _, found, err := s.Lookup(ctx, "DE", 1234); found || err != nil {
		t.Fatalf("deleted pair: found %v, %v", found, err)
	}
	if err := rdb.FlushAll(ctx).Err(); err != nil { // every primary (go-redis routes FLUSHALL to all)
		t.Fatal(err)
	}

	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("SUBGATE_CLUSTER_PAIRS")); err == nil && v > 0 {
		n = v
	}
	pr, pw := io.Pipe()
	go pairCSV(pw, n)
	rep, err := s.Import(ctx, pr)
	if err != nil || len(rep.Rejected) > 0 || rep.Written != n {
		t.Fatalf("import: %d written, rejected %v, %v", rep.Written, rep.Rejected, err)
	}
	per := n / len(clusterCountries)
	for _, id := range []int64{1, int64(per / 2), int64(per)} {
		for _, cc := range clusterCountries {
			want := mustUUID(t, fmt.Sprintf("%08x-0000-4000-8000-%012x", id, id))
			if ok, err := s.Owns(ctx, cc, id, want); !ok || err != nil {
				t.Fatalf("%s %d after import: %v %v", cc, id, ok, err)
			}
		}
	}

	// Count on each primary: keys in each of its slots, and pairs (HLEN).
	byPrimary, err := c.SlotsByPrimary()
	if err != nil {
		t.Fatal(err)
	}
	perSlot := make([]int64, 16384)
	var keys, pairs int64
	var report []string
	for p, slots := range byPrimary {
		nc := redis.NewClient(&redis.Options{Addr: p.Addr})
		pipe := nc.Pipeline()
		counts := make([]*redis.IntCmd, len(slots))
		for i, slot := range slots {
			counts[i] = pipe.ClusterCountKeysInSlot(ctx, slot)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		for i, slot := range slots {
			perSlot[slot] = counts[i].Val()
		}
		var nodePairs int64
		iter := nc.Scan(ctx, 0, "*", 1000).Iterator()
		pipe = nc.Pipeline()
		var lens []*redis.IntCmd
		for iter.Next(ctx) {
			lens = append(lens, pipe.HLen(ctx, iter.Val()))
		}
		if err := iter.Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		for _, l := range lens {
			nodePairs += l.Val()
		}
		nc.Close()
		keys += int64(len(lens))
		pairs += nodePairs
		report = append(report, fmt.Sprintf("%s: %d slots, %d keys, %d pairs", p.Addr, len(slots), len(lens), nodePairs))
		// Each primary's share of the pairs follows its share of the slots
		// as far as chance allows: its hash count is binomial, so it stays
		// within 6 standard deviations (√ of the expected count bounds
		// one); each hash holds up to BucketSize pairs.
		want := float64(n) * float64(len(slots)) / 16384
		if tol := (6*math.Sqrt(want/BucketSize) + 1) * BucketSize; math.Abs(float64(nodePairs)-want) > tol {
			t.Errorf("%s holds %d pairs, %.0f ± %.0f expected from its %d slots: a hot shard", p.Addr, nodePairs, want, tol, len(slots))
		}
	}
	if pairs != int64(n) {
		t.Fatalf("the primaries hold %d pairs, %d were written", pairs, n)
	}
	var max int64
	var empty int
	for _, k := range perSlot {
		max = max2(max, k)
		if k == 0 {
			empty++
		}
	}
	mean := float64(keys) / 16384
	// With keys/16384 keys per slot on average, a slot is hot only far
	// beyond what chance gives: a Poisson count with mean λ exceeds
	// λ + 8·√λ + 8 with a probability far below 1e-6 per slot.
	bound := mean + 8*math.Sqrt(mean) + 8
	t.Logf("%d pairs in %d hashes: keys per slot max %d, mean %.3f (max/mean %.1f), %d of 16384 slots empty; max pairs in one slot %d (%.4f%% of all); %s",
		n, keys, max, mean, float64(max)/mean, empty, max*BucketSize, 100*float64(max*BucketSize)/float64(n), strings.Join(report, "; "))
	if float64(max) > bound {
		t.Errorf("a slot holds %d keys, beyond chance (%.1f) for a mean of %.3f: a hot slot", max, bound, mean)
	}
}

func max2(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}
