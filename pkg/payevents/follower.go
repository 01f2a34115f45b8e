package payevents

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Handler is what a followed stream's entries do: the one part that
// differs between the payment events (Revocations) and the identity events
// (pkg/usercontext), which share this follower and so its guarantees.
type Handler interface {
	// Handle applies one entry; an error skips it (logged), the follower
	// goes on.
	Handle(m redis.XMessage) error
	// Prune forgets what no longer matters: state from before the replay
	// window's start (before, on the follower's clock).
	Prune(before time.Time)
}

// FollowerOptions configure a Follower.
type FollowerOptions struct {
	Stream string
	// Window is how far back to replay on start: the time in which an event
	// can still matter (for payment events the longest token lifetime plus
	// leeway). The handler's Prune gets its start.
	Window time.Duration
	// Block is how long one XREAD waits for new entries (default 1s). Each
	// answer, even an empty one, proves the connection is alive.
	Block time.Duration
	// FirstSync bounds how long, counted from Start, a check waits for the
	// follower's first complete catch-up (see AwaitFirstSync); default
	// DefaultFirstSync. Past it, a follower that never caught up is stale
	// and checks answer at once (fail closed).
	FirstSync time.Duration
	Now       func() time.Time
}

// DefaultFirstSync is twice redisconn's default dial plus read timeout
// (200 ms + 100 ms): room for one failed attempt and go-redis' retry of
// the replay's first XRANGE, far below Kong's 10 s wait for an instance
// and the 10 s staleness bound.
const DefaultFirstSync = 600 * time.Millisecond

// Follower keeps a Handler's state current from a stream: it replays the
// window on start, then reads new entries with blocking XREADs, and after
// a lost connection resumes from the last id it saw, so no event is lost.
type Follower struct {
	rdb redis.UniversalClient
	o   FollowerOptions
	h   Handler

	lastID      string
	lastPrune   time.Time
	lastContact atomic.Int64 // unix nanos of the last successful read; 0: never synced
	applied     atomic.Int64

	// caughtUp (and synced, closed at the same moment) says the state has
	// once held every event in the window up to the stream's end: until
	// then it is stale whatever lastContact says (a replay cut short by a
	// lost connection has answered, but is not complete).
	caughtUp      atomic.Bool
	synced        chan struct{}
	firstDeadline atomic.Int64 // unix nanos: Start + FirstSync; 0: not started

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// NewFollower makes a follower of the payment events into Revocations
// (the stream defaults to DefaultStream); rdb must be a client whose read
// timeout allows Block (the follower's own, not a shared request-path
// client).
func NewFollower(rdb redis.UniversalClient, o FollowerOptions) *Follower {
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	return Follow(rdb, o, NewRevocations())
}

// Follow makes a follower of o.Stream (required) that hands every entry
// to h; rdb as for NewFollower.
func Follow(rdb redis.UniversalClient, o FollowerOptions, h Handler) *Follower {
	if o.Block <= 0 {
		o.Block = time.Second
	}
	if o.FirstSync <= 0 {
		o.FirstSync = DefaultFirstSync
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Follower{rdb: rdb, o: o, h: h, synced: make(chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{})}
}

// Handler is the state the follower keeps current.
func (f *Follower) Handler() Handler { return f.h }

// Revocations is the state a payment-events follower keeps current (nil
// for a follower of another kind).
func (f *Follower) Revocations() *Revocations {
	r, _ := f.h.(*Revocations)
	return r
}

// Applied counts events applied since start.
func (f *Follower) Applied() int64 { return f.applied.Load() }

// LastContact is when Redis last answered the follower (zero: never).
func (f *Follower) LastContact() time.Time {
	n := f.lastContact.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Stream is the stream the follower reads.
func (f *Follower) Stream() string { return f.o.Stream }

// Lag is how long ago Redis last answered the follower, by the follower's
// clock; ok is false when it never has.
func (f *Follower) Lag() (lag time.Duration, ok bool) {
	last := f.LastContact()
	if last.IsZero() {
		return 0, false
	}
	return f.o.Now().Sub(last), true
}

// Start runs the follower until Stop. It does not wait for Redis: a
// plugin instance starts inside Kong's first request and must start fast
// whether Redis answers or not; the first checks wait instead, bounded, in
// AwaitFirstSync.
func (f *Follower) Start() {
	f.firstDeadline.Store(time.Now().Add(f.o.FirstSync).UnixNano())
	go f.run()
}

// AwaitFirstSync waits until the follower has first caught up with the
// stream (every event in the window, up to the stream's end, applied) or
// until FirstSync after Start has passed, whichever comes first, and
// reports whether it has caught up. Once caught up it returns at once, and
// so it does after the deadline: only the checks that arrive while a fresh
// follower replays wait, and they all wait for that one replay, sharing it
// (no Redis call of their own).
//
// Why wait rather than read the state synchronously on first use: the
// follower's replay already is that read, and it starts with the instance,
// so the first request waits for the time of one XRANGE on a new
// connection (about a millisecond on a LAN) and then finds the exact state
// the follower goes on to keep current. A second, request-path read would
// need its own hand-over to the follower (which id to resume from), could
// race the follower's own replay, and would multiply Redis calls by the
// number of concurrent first requests.
func (f *Follower) AwaitFirstSync() bool {
	if f.caughtUp.Load() {
		return true
	}
	dl := f.firstDeadline.Load()
	if dl == 0 { // not started: nothing to wait for
		return false
	}
	d := time.Until(time.Unix(0, dl))
	if d <= 0 {
		return f.caughtUp.Load()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-f.synced:
	case <-t.C:
	case <-f.stop:
	}
	return f.caughtUp.Load()
}

func (f *Follower) markCaughtUp() {
	if f.caughtUp.CompareAndSwap(false, true) {
		close(f.synced)
	}
}

// Stop ends the follower and waits for it.
func (f *Follower) Stop() {
	f.stopOnce.Do(func() { close(f.stop) })
	<-f.done
}

func (f *Follower) run() {
	defer close(f.done)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-f.stop; cancel() }()
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		var err error
		if f.lastID == "" {
			err = f.replay(ctx)
		} else {
			err = f.read(ctx)
		}
		if err == nil {
			backoff = 50 * time.Millisecond
			continue
		}
		if ctx.Err() != nil {
			return
		}
		slog.Warn("stream follower: Redis read failed; resuming from the last id seen",
			slog.String("stream", f.o.Stream), slog.String("last_id", f.lastID), slog.String("error", err.Error()))
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = nextBackoff(backoff)
	}
}

// maxBackoff bounds the wait between a follower's attempts while Redis is
// away: every second of it is a second more of stale state (503
// revocation_state_stale, no identity fallback) once Redis is back, and
// one XREAD a second per process costs a recovering Redis nothing.
const maxBackoff = time.Second

func nextBackoff(d time.Duration) time.Duration { return min(2*d, maxBackoff) }

// replay reads everything in the window, then the follower continues
// from the last entry (or from the window's start when it is empty).
func (f *Follower) replay(ctx context.Context) error {
	start := f.o.Now().Add(-f.o.Window).UnixMilli()
	from := strconv.FormatInt(start, 10)
	for {
		msgs, err := f.rdb.XRangeN(ctx, f.o.Stream, from, "+", 1000).Result()
		if err != nil {
			return err
		}
		f.apply(msgs)
		if len(msgs) < 1000 {
			break
		}
		from = "(" + msgs[len(msgs)-1].ID
	}
	if f.lastID == "" {
		f.lastID = strconv.FormatInt(start, 10) + "-0"
	}
	f.touch()
	f.h.Prune(f.o.Now().Add(-f.o.Window))
	f.markCaughtUp()
	return nil
}

func (f *Follower) read(ctx context.Context) error {
	res, err := f.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{f.o.Stream, f.lastID}, Count: readCount, Block: f.o.Block}).Result()
	if errors.Is(err, redis.Nil) { // BLOCK timed out with nothing new: still a sign of life
		f.touch()
		f.markCaughtUp() // nothing after lastID: caught up (after a replay cut short)
		f.prune()
		return nil
	}
	if err != nil {
		return err
	}
	n := 0
	for _, s := range res {
		f.apply(s.Messages)
		n += len(s.Messages)
	}
	f.touch()
	if n < readCount { // the whole rest of the stream came in this answer
		f.markCaughtUp()
	}
	f.prune()
	return nil
}

// prune hands the handler the window's start, once a minute: a quiet
// stream too, so state from before the window goes whether or not new
// events arrive.
func (f *Follower) prune() {
	if now := f.o.Now(); now.Sub(f.lastPrune) > time.Minute {
		f.h.Prune(now.Add(-f.o.Window))
		f.lastPrune = now
	}
}

// readCount is the most entries one XREAD returns; an answer with fewer
// holds everything up to the stream's end.
const readCount = 1000

func (f *Follower) apply(msgs []redis.XMessage) {
	for _, m := range msgs {
		f.lastID = m.ID
		if err := f.h.Handle(m); err != nil {
			slog.Error("stream follower: entry skipped", slog.String("stream", f.o.Stream), slog.String("id", m.ID), slog.String("error", err.Error()))
			continue
		}
		f.applied.Add(1)
	}
}

func (f *Follower) touch() { f.lastContact.Store(f.o.Now().UnixNano()) }

// Stale reports whether the state cannot be trusted: never caught up with
// the stream, or no answer from Redis for longer than bound. It does not
// wait; Bound.Stale does (AwaitFirstSync).
func (f *Follower) Stale(bound time.Duration) bool {
	if !f.caughtUp.Load() {
		return true
	}
	last := f.LastContact()
	return last.IsZero() || f.o.Now().Sub(last) > bound
}
