package payevents

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// durability is how many replicas must hold an event before Publish
// reports it published.
type durability struct {
	replicas int
	timeout  time.Duration
}

// ErrNotReplicated is returned (wrapped) when the primary took an event
// but too few replicas confirmed it in time: the event may be lost if the
// primary fails now. Publish it again; a repeated event changes nothing
// (a customer's revocation time is the latest one seen).
var ErrNotReplicated = errors.New("payevents: event not confirmed by enough replicas")

// WaitForReplicas makes Publish return only once n replicas of the
// stream's primary hold the event (Redis WAIT, at most timeout), and fail
// with ErrNotReplicated otherwise. Redis replicates asynchronously: without
// it, a revocation the primary acknowledged just before dying can be
// missing from the replica that takes over, and every follower that starts
// afterwards replays a stream without it. With Sentinel or Cluster, use
// n = 1 (the promoted replica is the most up to date one).
func (p *Publisher) WaitForReplicas(n int, timeout time.Duration) (*Publisher, error) {
	if n < 1 || timeout <= 0 {
		return nil, fmt.Errorf("payevents: WaitForReplicas(%d, %v): want n ≥ 1 and a positive timeout (0 would wait forever)", n, timeout)
	}
	q := *p
	q.durable = durability{replicas: n, timeout: timeout}
	return &q, nil
}

// publishReplicated sends XADD and then WAIT on one connection to the
// stream's primary: WAIT counts the replicas that have this connection's
// writes. Two round trips: events are rare, and WAIT cannot be pipelined
// with its own read timeout.
func (p *Publisher) publishReplicated(ctx context.Context, args *redis.XAddArgs) (string, error) {
	var node *redis.Client
	switch r := p.rdb.(type) {
	case *redis.ClusterClient:
		c, err := r.MasterForKey(ctx, p.stream)
		if err != nil {
			return "", err
		}
		node = c
	case *redis.Client: // a single node, or Sentinel's current master
		node = r
	default:
		return "", fmt.Errorf("payevents: WaitForReplicas needs a single-node, Sentinel or Cluster client, not %T", p.rdb)
	}
	conn := node.Conn()
	defer conn.Close()
	id, err := conn.XAdd(ctx, args).Result()
	if err != nil {
		if cc, ok := p.rdb.(*redis.ClusterClient); ok {
			cc.ReloadState(ctx) // MOVED after a failover or reshard: the next try finds the new primary
		}
		return "", err
	}
	n, err := conn.Wait(ctx, p.durable.replicas, p.durable.timeout).Result()
	if err != nil {
		return id, fmt.Errorf("%w: WAIT: %v", ErrNotReplicated, err)
	}
	if n < int64(p.durable.replicas) {
		return id, fmt.Errorf("%w: %d of %d within %v", ErrNotReplicated, n, p.durable.replicas, p.durable.timeout)
	}
	return id, nil
}
