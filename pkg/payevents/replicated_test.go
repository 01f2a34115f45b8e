package payevents

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// A publisher that waits for a replica fails with ErrNotReplicated when
// none confirms (here: a server without replicas), after the primary took
// the event; and it refuses settings that would wait forever.
func TestWaitForReplicasWithoutReplica(t *testing.T) {
	srv, rdb := realRedis(t, "--repl-diskless-sync-delay", "0") // a replica's first sync at once, not after 5 s
	pub, _ := NewPublisher(rdb, "wait-test", time.Hour)
	if _, err := pub.WaitForReplicas(0, time.Second); err == nil {
		t.Fatal("0 replicas accepted")
	}
	if _, err := pub.WaitForReplicas(1, 0); err == nil {
		t.Fatal("a zero timeout (WAIT forever) accepted")
	}
	durable, err := pub.WaitForReplicas(1, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id, err := durable.Publish(ctx, Event{Type: Block, CustomerID: "c", At: time.Now()})
	if !errors.Is(err, ErrNotReplicated) || id == "" {
		t.Fatalf("publish without a replica: id %q, err %v; want the id and ErrNotReplicated", id, err)
	}
	if n, _ := rdb.XLen(ctx, "wait-test").Result(); n != 1 {
		t.Fatalf("stream holds %d entries, want the 1 the primary took", n)
	}
	// With a replica attached, the same publisher succeeds.
	_, repc := realRedis(t)
	if err := repc.Do(ctx, "REPLICAOF", "127.0.0.1", portOf(srv.Addr)).Err(); err != nil {
		t.Fatal(err)
	}
	durable, _ = pub.WaitForReplicas(1, 2*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := durable.Publish(ctx, Event{Type: Block, CustomerID: "d", At: time.Now()})
		if err == nil {
			break
		}
		if time.Now().After(deadline) { // the replica's first sync takes a moment
			t.Fatalf("publish with a replica: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}
