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

// FollowerOptions configure a Follower.
type FollowerOptions struct {
	Stream string
	// Window is how far back to replay on start: the longest token lifetime
	// plus leeway, the time in which a revocation can still matter.
	Window time.Duration
	// Block is how long one XREAD waits for new entries (default 1s). Each
	// answer, even an empty one, proves the connection is alive.
	Block time.Duration
	Now   func() time.Time
}

// Follower keeps Revocations current from the stream: it replays the
// window on start, then reads new entries with blocking XREADs, and after
// a lost connection resumes from the last id it saw, so no event is lost.
type Follower struct {
	rdb  redis.UniversalClient
	o    FollowerOptions
	revs *Revocations

	lastID      string
	lastPrune   time.Time
	lastContact atomic.Int64 // unix nanos of the last successful read; 0: never synced
	applied     atomic.Int64

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// NewFollower makes a follower; rdb must be a client whose read timeout
// allows Block (the follower's own, not a shared request-path client).
func NewFollower(rdb redis.UniversalClient, o FollowerOptions) *Follower {
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if o.Block <= 0 {
		o.Block = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Follower{rdb: rdb, o: o, revs: NewRevocations(), stop: make(chan struct{}), done: make(chan struct{})}
}

// Revocations is the state the follower keeps current.
func (f *Follower) Revocations() *Revocations { return f.revs }

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

// Start runs the follower until Stop.
func (f *Follower) Start() { go f.run() }

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
		slog.Warn("payment events: Redis read failed; resuming from the last id seen",
			slog.String("stream", f.o.Stream), slog.String("last_id", f.lastID), slog.String("error", err.Error()))
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		if backoff < 2*time.Second {
			backoff *= 2
		}
	}
}

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
	f.revs.Prune(f.o.Now().Add(-f.o.Window))
	return nil
}

func (f *Follower) read(ctx context.Context) error {
	res, err := f.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{f.o.Stream, f.lastID}, Count: 1000, Block: f.o.Block}).Result()
	if errors.Is(err, redis.Nil) { // BLOCK timed out with nothing new: still a sign of life
		f.touch()
		return nil
	}
	if err != nil {
		return err
	}
	for _, s := range res {
		f.apply(s.Messages)
	}
	f.touch()
	if now := f.o.Now(); now.Sub(f.lastPrune) > time.Minute {
		f.revs.Prune(now.Add(-f.o.Window))
		f.lastPrune = now
	}
	return nil
}

func (f *Follower) apply(msgs []redis.XMessage) {
	for _, m := range msgs {
		f.lastID = m.ID
		e, err := decode(m)
		if err != nil {
			slog.Error("payment events: entry skipped", slog.String("id", m.ID), slog.String("error", err.Error()))
			continue
		}
		f.revs.Apply(e)
		f.applied.Add(1)
	}
}

func (f *Follower) touch() { f.lastContact.Store(f.o.Now().UnixNano()) }

// Stale reports whether the state cannot be trusted: never synced, or no
// answer from Redis for longer than bound.
func (f *Follower) Stale(bound time.Duration) bool {
	last := f.LastContact()
	return last.IsZero() || f.o.Now().Sub(last) > bound
}
