package usercontext

// Identity events: the identity service publishes what makes a cached
// context wrong (a user deleted, blocked, or given another role) on a Redis
// Stream; every plugin server follows it with the payment events' follower
// (pkg/payevents: replay window, blocking XREAD, resume from the last id)
// and drops the user's cached contexts. The rule the fallback keeps: a
// cached context is never served for a user whose event was applied after
// the lookup that fetched it began, and never while the follower is stale
// (it cannot know): then the identity service's 503 reaches the client.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/payevents"
	"github.com/subgate/subgate/pkg/redisconn"
)

// EventsConfig is where a route follows the identity events, declared once
// (see pkg/config); absent, the fallback cache knows no events.
type EventsConfig struct {
	Redis             redisconn.Config `json:"redis" kong:"required" doc:"Where the identity-event stream lives."`
	Stream            string           `json:"stream" default:"$identity_events_stream" kong:"len_min=1" doc:"The identity-event stream."`
	StaleAfterSeconds int              `json:"stale_after_seconds" default:"10" kong:"between=1|3600" doc:"Past this silence from Redis the events are stale: the cache is not served (the 503 goes to the client)."`
}

// DefaultEventsStream is the identity-event stream unless configured.
var DefaultEventsStream = config.Define("identity_events_stream", "subgate:identity-events")

// EventType is what happened to a user.
type EventType string

// The event types. Each evicts the user's cached contexts; so does a type
// this version does not know (evicting only ever costs a fallback).
const (
	UserDeleted EventType = "deleted"
	UserBlocked EventType = "blocked"
	RoleChanged EventType = "role_changed"
)

func (t EventType) valid() bool { return t == UserDeleted || t == UserBlocked || t == RoleChanged }

// Event is one identity event.
type Event struct {
	Type   EventType
	UserID string    // the user id, as the context's user_id_field holds it
	At     time.Time // when it happened, on the identity service's clock
	ID     string    // the identity service's own event id (for its audit); Publish makes one when empty
}

// EventsWindow is how far back a route's follower replays identity events
// when it starts: the oldest cached context it may serve (max_stale) plus
// the longest lookup (deadline), since a context is cached up to a
// deadline after its lookup began. A publisher's retention must be at
// least the longest window of any route.
func EventsWindow(c Config) time.Duration {
	config.FillZero(&c)
	return time.Duration(c.MaxStaleSeconds)*time.Second + ms(c.DeadlineMs)
}

// Publisher appends identity events to the stream (the identity service's
// side), with the payment events' write path and trimming.
type Publisher struct {
	p *payevents.Publisher
}

// NewPublisher makes a publisher on stream ("" for DefaultEventsStream)
// that trims entries older than retention (at least EventsWindow of every
// route that follows it).
func NewPublisher(rdb redis.UniversalClient, stream string, retention time.Duration) (*Publisher, error) {
	if stream == "" {
		stream = DefaultEventsStream
	}
	p, err := payevents.NewPublisher(rdb, stream, retention)
	if err != nil {
		return nil, err
	}
	return &Publisher{p: p}, nil
}

// WaitForReplicas returns a publisher whose Publish returns only once n
// replicas hold the event (payevents.Publisher.WaitForReplicas): on a
// failover Redis may lose an event only its primary had, and a lost
// deletion would leave a deleted user's cached context servable.
func (p *Publisher) WaitForReplicas(n int, timeout time.Duration) (*Publisher, error) {
	q, err := p.p.WaitForReplicas(n, timeout)
	if err != nil {
		return nil, err
	}
	return &Publisher{p: q}, nil
}

// Publish appends e and returns its stream id. Publish after the change is
// committed: a lookup that begins once the event is applied must see the
// new state.
func (p *Publisher) Publish(ctx context.Context, e Event) (string, error) {
	if !e.Type.valid() || e.UserID == "" || e.At.IsZero() {
		return "", fmt.Errorf("usercontext: invalid identity event %+v", e)
	}
	if e.ID == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		e.ID = hex.EncodeToString(b[:])
	}
	return p.p.Append(ctx, e.At, "type", string(e.Type), "user", e.UserID,
		"at", strconv.FormatInt(e.At.UnixMilli(), 10), "event_id", e.ID)
}

func decodeEvent(m redis.XMessage) (Event, error) {
	get := func(k string) string { s, _ := m.Values[k].(string); return s }
	e := Event{Type: EventType(get("type")), UserID: get("user"), ID: get("event_id")}
	if ms, err := strconv.ParseInt(get("at"), 10, 64); err == nil {
		e.At = time.UnixMilli(ms)
	}
	if e.UserID == "" {
		return e, fmt.Errorf("usercontext: identity event %s names no user: %v", m.ID, m.Values)
	}
	return e, nil
}

// evictions is a follower's state (payevents.Handler): when each user's
// latest event was applied here (local clock), and the caches it evicts
// from.
type evictions struct {
	mu       sync.Mutex
	applied  map[string]time.Time
	services map[*service]struct{}
	shared   map[*sharedLevel]struct{}
}

func newEvictions() *evictions {
	return &evictions{applied: map[string]time.Time{}, services: map[*service]struct{}{}, shared: map[*sharedLevel]struct{}{}}
}

// Len is the number of users with an event in the window (a gauge).
func (v *evictions) Len() int { v.mu.Lock(); defer v.mu.Unlock(); return len(v.applied) }

// Handle applies one entry: the user's cached contexts go, and the time is
// kept to refuse a context whose lookup was in flight meanwhile.
func (v *evictions) Handle(m redis.XMessage) error {
	e, err := decodeEvent(m)
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.applied[e.UserID] = time.Now()
	svcs := make([]*service, 0, len(v.services))
	for s := range v.services {
		svcs = append(svcs, s)
	}
	levels := make([]*sharedLevel, 0, len(v.shared))
	for l := range v.shared {
		levels = append(levels, l)
	}
	v.mu.Unlock()
	for _, s := range svcs {
		s.evictUser(e.UserID)
	}
	for _, l := range levels {
		l.userEvent(e.UserID) // in the background: the follower does not wait for Redis
	}
	if !e.Type.valid() {
		slog.Warn("identity events: unknown event type; the user's cached contexts were evicted anyway",
			slog.String("id", m.ID), slog.String("type", string(e.Type)))
	}
	return nil
}

// Prune forgets events applied before the window's start: a context whose
// lookup began before then is older than max_stale and never served.
func (v *evictions) Prune(before time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for u, at := range v.applied {
		if at.Before(before) {
			delete(v.applied, u)
		}
	}
}

// attach makes v evict from s too.
func (v *evictions) attach(s *service) {
	v.mu.Lock()
	v.services[s] = struct{}{}
	v.mu.Unlock()
}

// attachShared makes v delete from the shared level l too.
func (v *evictions) attachShared(l *sharedLevel) {
	v.mu.Lock()
	v.shared[l] = struct{}{}
	v.mu.Unlock()
}

// recent reports whether an event for user was applied within the window
// (Prune forgets older ones): the shared level is then not used for the
// user, whose entries come from other nodes' lookups, timed by other clocks.
func (v *evictions) recent(user string) bool {
	v.mu.Lock()
	_, ok := v.applied[user]
	v.mu.Unlock()
	return ok
}

// covers reports whether an event for user was applied at or after asked,
// when the lookup that fetched a context began: that context may predate
// the change and is never served.
func (v *evictions) covers(user string, asked time.Time) bool {
	v.mu.Lock()
	at, ok := v.applied[user]
	v.mu.Unlock()
	return ok && !at.Before(asked)
}

// routeEvents is a route's link to its follower.
type routeEvents struct {
	f      *payevents.Follower
	v      *evictions
	stale  func() bool // payevents.Bound.Stale: waits, bounded, for a fresh follower's first sync
	stream string
}

// followEvents starts (or joins) the process-wide follower of c.Events
// and makes it evict from svc.
func followEvents(c Config, svc *service) (*routeEvents, error) {
	o := payevents.FollowerOptions{Stream: c.Events.Stream, Window: EventsWindow(c)}
	f, err := payevents.SharedOf("identity", c.Events.Redis, o, func() payevents.Handler { return newEvictions() })
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	return attachEvents(f, svc, time.Duration(c.Events.StaleAfterSeconds)*time.Second)
}

func attachEvents(f *payevents.Follower, svc *service, staleAfter time.Duration) (*routeEvents, error) {
	v, ok := f.Handler().(*evictions)
	if !ok {
		return nil, errors.New("events: the follower is not an identity-events follower")
	}
	v.attach(svc)
	return &routeEvents{f: f, v: v, stale: payevents.Bound{F: f, After: staleAfter}.Stale, stream: f.Stream()}, nil
}
