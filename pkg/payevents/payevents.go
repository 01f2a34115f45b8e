// Package payevents carries the payment service's events (cancellation,
// refund, block, reactivation) over a Redis Stream to every plugin server,
// so a revoked payment-access-token stops working at once instead of at its
// expiry, without a Redis call per request (the seed's iteration 2, cache
// invalidation by events, turned into revocation).
//
// The rule: a token issued at or before the customer's latest revocation
// is revoked. Token iat has one-second resolution and events have
// milliseconds, so a token issued in the same second as the revocation is
// revoked too (fail closed); a token issued in a later second, as after a
// reactivation, is accepted.
//
// The stream follower here (Follower, Shared, SharedOf) is the one every
// event stream uses: a Handler says what an entry does. pkg/usercontext
// follows the identity events with it.
package payevents

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/subgate/subgate/pkg/config"

	"github.com/redis/go-redis/v9"
)

// Type is what happened to a customer's subscription.
type Type string

// The event types. The first three revoke; reactivation is recorded but
// needs nothing: tokens issued after the revocation pass by the rule.
const (
	Cancellation Type = "cancellation"
	Refund       Type = "refund"
	Block        Type = "block"
	Reactivation Type = "reactivation"
)

// Revokes reports whether events of type t revoke earlier tokens.
func (t Type) Revokes() bool { return t == Cancellation || t == Refund || t == Block }

func (t Type) valid() bool { return t.Revokes() || t == Reactivation }

// Event is one payment event.
type Event struct {
	Type       Type
	CustomerID string
	At         time.Time // when it happened, on the payment service's clock (the issuer's)
}

// DefaultStream is the stream name unless configured.
var DefaultStream = config.Define("payment_events_stream", "subgate:payment-events")

// Publisher appends events to the stream, trimming entries older than
// Retention (the longest token lifetime plus leeway: an older revocation
// can only concern tokens that have expired anyway).
type Publisher struct {
	rdb       redis.UniversalClient
	stream    string
	retention time.Duration
	durable   durability // zero: acknowledged by the primary alone
}

// NewPublisher makes a publisher.
func NewPublisher(rdb redis.UniversalClient, stream string, retention time.Duration) (*Publisher, error) {
	if stream == "" {
		stream = DefaultStream
	}
	if retention <= 0 {
		return nil, errors.New("payevents: retention must be positive")
	}
	return &Publisher{rdb: rdb, stream: stream, retention: retention}, nil
}

// Publish appends e and returns its stream id.
func (p *Publisher) Publish(ctx context.Context, e Event) (string, error) {
	if !e.Type.valid() || e.CustomerID == "" || e.At.IsZero() {
		return "", fmt.Errorf("payevents: invalid event %+v", e)
	}
	return p.Append(ctx, e.At, "type", string(e.Type), "customer", e.CustomerID, "at", strconv.FormatInt(e.At.UnixMilli(), 10))
}

// Append adds an entry of field/value pairs to the stream, trimming the
// entries published longer than the retention before at, and returns its
// stream id: the one write path of every event stream (pkg/usercontext's
// identity events too), so WaitForReplicas holds for both.
func (p *Publisher) Append(ctx context.Context, at time.Time, values ...any) (string, error) {
	minID := strconv.FormatInt(at.Add(-p.retention).UnixMilli(), 10)
	args := &redis.XAddArgs{
		Stream: p.stream, MinID: minID, // exact trim: events are rare, and a bound that holds is worth the O(n)
		Values: values,
	}
	if p.durable.replicas > 0 {
		return p.publishReplicated(ctx, args)
	}
	return p.rdb.XAdd(ctx, args).Result()
}

// Stream is the stream the publisher appends to.
func (p *Publisher) Stream() string { return p.stream }

func decode(m redis.XMessage) (Event, error) {
	get := func(k string) string { s, _ := m.Values[k].(string); return s }
	ms, err := strconv.ParseInt(get("at"), 10, 64)
	e := Event{Type: Type(get("type")), CustomerID: get("customer"), At: time.UnixMilli(ms)}
	if err != nil || !e.Type.valid() || e.CustomerID == "" {
		return e, fmt.Errorf("payevents: undecodable entry %s: %v", m.ID, m.Values)
	}
	return e, nil
}

// Revocations is the in-memory latest revocation time per customer.
type Revocations struct {
	mu      sync.RWMutex
	revoked map[string]time.Time
}

// NewRevocations makes an empty set.
func NewRevocations() *Revocations { return &Revocations{revoked: map[string]time.Time{}} }

// Apply records e.
func (r *Revocations) Apply(e Event) {
	if !e.Type.Revokes() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.At.After(r.revoked[e.CustomerID]) {
		r.revoked[e.CustomerID] = e.At
	}
}

// Handle applies one stream entry (Handler).
func (r *Revocations) Handle(m redis.XMessage) error {
	e, err := decode(m)
	if err != nil {
		return err
	}
	r.Apply(e)
	return nil
}

// Revoked reports whether a token of customer issued at iat is revoked.
func (r *Revocations) Revoked(customer string, iat time.Time) bool {
	r.mu.RLock()
	at, ok := r.revoked[customer]
	r.mu.RUnlock()
	// iat has second resolution: same second as the revocation is revoked.
	return ok && iat.Unix() <= at.Unix()
}

// Prune forgets revocations older than before: every token they could
// concern has expired. Keeps the map bounded by the events in the window.
func (r *Revocations) Prune(before time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c, at := range r.revoked {
		if at.Before(before) {
			delete(r.revoked, c)
		}
	}
}

// Len is the number of customers with a revocation on record.
func (r *Revocations) Len() int { r.mu.RLock(); defer r.mu.RUnlock(); return len(r.revoked) }
