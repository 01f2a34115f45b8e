package payevents

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/health"
	"github.com/subgate/subgate/pkg/processwide"

	"github.com/subgate/subgate/pkg/redisconn"
)

var followers processwide.Map[string, *Follower]

// Shared returns the process-wide follower of the payment-event stream at
// these Redis settings, starting it on first use: every route that checks
// payment tokens against the same stream shares one follower and one
// state, and a config change (a new go-pdk instance) does not start a
// second one.
func Shared(rc redisconn.Config, o FollowerOptions) (*Follower, error) {
	return SharedOf("payment", rc, o, func() Handler { return NewRevocations() })
}

// SharedOf is Shared for any kind of stream: the process-wide follower of
// kind (which names the handler: followers of different kinds never share
// state) at these settings, its handler made by h on first use.
func SharedOf(kind string, rc redisconn.Config, o FollowerOptions, h func() Handler) (*Follower, error) {
	if o.Window <= 0 {
		return nil, fmt.Errorf("payevents: replay window must be positive")
	}
	if o.Stream == "" {
		return nil, fmt.Errorf("payevents: a %s follower needs a stream", kind)
	}
	if o.FirstSync <= 0 {
		// One failed attempt and a retry, at these settings' timeouts.
		d := rc
		config.FillZero(&d)
		o.FirstSync = 2 * time.Duration(d.DialTimeoutMs+d.ReadTimeoutMs) * time.Millisecond
	}
	key := fmt.Sprintf("%s|%s|%s|%v|%v|%v", kind, rc.Key(), o.Stream, o.Window, o.Block, o.FirstSync)
	return followers.Get(key, func() (*Follower, error) {
		// Its own client: blocking reads must not hold a request-path connection.
		rdb, err := rc.Client("redis")
		if err != nil {
			return nil, err
		}
		f := Follow(rdb, o, h())
		f.Start()
		health.Register(fmt.Sprintf("stream %s (%s events) on %s", o.Stream, kind, strings.Join(rc.Addresses, ",")), f.ready)
		return f, nil
	})
}

// readyAfter is how long a follower may go without an answer from Redis
// before the plugin server's /ready says so: the default staleness bound of
// the routes that follow a stream (their checks then fail closed).
const readyAfter = 10 * time.Second

// ready is the follower's readiness check (pkg/health).
func (f *Follower) ready(context.Context) error {
	if !f.caughtUp.Load() {
		return errors.New("has not caught up with the stream since it started")
	}
	if f.Stale(readyAfter) {
		return fmt.Errorf("no answer from Redis for %v (last at %s)", readyAfter, f.LastContact().UTC().Format(time.RFC3339))
	}
	return nil
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
