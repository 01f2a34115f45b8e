package payevents

import (
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/redisconn"
)

var (
	sharedMu  sync.Mutex
	followers = map[string]*Follower{}
)

// Shared returns the process-wide follower of the stream at these Redis
// settings, starting it on first use: every route that checks payment
// tokens against the same stream shares one follower and one state, and a
// config change (a new go-pdk instance) does not start a second one.
func Shared(ro redisconn.Options, o FollowerOptions) (*Follower, error) {
	ro.Defaults()
	if err := ro.Validate(); err != nil {
		return nil, err
	}
	if o.Window <= 0 {
		return nil, fmt.Errorf("payevents: replay window must be positive")
	}
	if o.FirstSync <= 0 {
		// One failed attempt and a retry, at these settings' timeouts.
		o.FirstSync = 2 * time.Duration(ro.DialTimeoutMs+ro.ReadTimeoutMs) * time.Millisecond
	}
	key := fmt.Sprintf("%+v|%s|%v|%v|%v", ro, o.Stream, o.Window, o.Block, o.FirstSync)
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if f, ok := followers[key]; ok {
		return f, nil
	}
	// Its own client: blocking reads must not hold a request-path connection.
	f := NewFollower(redis.NewUniversalClient(ro.Universal()), o)
	f.Start()
	followers[key] = f
	return f, nil
}

// Bound is a staleness bound, for callers that hold one follower.
type Bound struct {
	F     *Follower
	After time.Duration
}

// Stale reports whether F's state cannot be trusted: it has not heard from
// Redis within After, or has never caught up with the stream. A check that
// comes while a freshly started follower replays waits for that replay,
// bounded by FirstSync after the follower's start (AwaitFirstSync): the
// first request after a plugin-server start or a new Redis setting gets
// the answer a later one would, and fails closed (stale) only when Redis
// does not answer in time.
func (b Bound) Stale() bool {
	b.F.AwaitFirstSync()
	return b.F.Stale(b.After)
}
