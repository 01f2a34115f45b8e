package ownership

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/redistest"
)

// TestMemoryPerPair loads N pairs into a real redis-server under layout v1
// and under the naive layout (SET "{country}:{id}" → 36-character UUID
// string) and reports used memory per pair for each. It is slow, so it runs
// only when SUBGATE_MEMORY_PAIRS is set (`make bench-memory` sets 1000000).
func TestMemoryPerPair(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SUBGATE_MEMORY_PAIRS"))
	if n <= 0 {
		t.Skip("set SUBGATE_MEMORY_PAIRS (e.g. 1000000) to measure memory per pair")
	}
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	ctx := context.Background()
	customer := func(i int) UUID {
		var u UUID
		copy(u[:], fmt.Sprintf("%016x", i*2654435761)) // distinct, incompressible enough
		return u
	}
	measure := func(load func(pipe redis.Pipeliner, i int)) float64 {
		if err := rdb.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		before := usedMemory(t, rdb)
		pipe := rdb.Pipeline()
		for i := 1; i <= n; i++ {
			load(pipe, i)
			if i%ImportBatch == 0 || i == n {
				if _, err := pipe.Exec(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		return float64(usedMemory(t, rdb)-before) / float64(n)
	}
	l := Layout{Prefix: DefaultPrefix}
	ours := measure(func(p redis.Pipeliner, i int) {
		u := customer(i)
		p.HSet(ctx, l.Key("DE", int64(i)), l.Field(int64(i)), u[:])
	})
	enc, err := rdb.ObjectEncoding(ctx, l.Key("DE", 1)).Result()
	if err != nil {
		t.Fatal(err)
	}
	naive := measure(func(p redis.Pipeliner, i int) {
		p.Set(ctx, "DE:"+strconv.Itoa(i), customer(i).String(), 0)
	})
	t.Logf("pairs: %d; layout %s (hash encoding %s): %.1f bytes/pair; naive SET of 36-char strings: %.1f bytes/pair",
		n, Version, enc, ours, naive)
	fmt.Printf("| %d | %.1f | %.1f | %s |\n", n, ours, naive, enc)
	if enc != "listpack" && enc != "ziplist" {
		t.Errorf("buckets are %s, not the compact encoding", enc)
	}
	if ours > 32 {
		t.Errorf("layout %s uses %.1f bytes per pair; the goal is 32 or fewer", Version, ours)
	}
}

func usedMemory(t *testing.T, rdb *redis.Client) int64 {
	info, err := rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatal("no used_memory in INFO")
	return 0
}
