package usercontext

import (
	"time"

	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/metrics"
)

// The fallback cache's hit ratio, as two counters per identity URL.
var (
	cacheReads = metrics.NewCounter("subgate_identity_cache_reads_total",
		"Lookups that met an identity 503 with a credential to key the fallback cache, and so read it (once per lookup). The cache hit ratio is rate(subgate_identity_cache_hits_total) / rate(subgate_identity_cache_reads_total): two counters rather than a ratio gauge, so it can be taken over any window and summed across plugin servers. Outcome cache_fallback of subgate_identity_lookups_total over all its outcomes is the share of all lookups the cache served.",
		"identity_url")
	cacheHits = metrics.NewCounter("subgate_identity_cache_hits_total",
		"Lookups the fallback cache served (a cached context younger than max_stale_seconds); see subgate_identity_cache_reads_total.",
		"identity_url")
)

// The fallback caches' sizes, per identity URL.
func init() {
	metrics.RegisterGaugeFunc("subgate_identity_cache_entries",
		"User contexts in the fallback cache of an identity URL (bounded by cache_size). The URL is shown without user info or query.",
		[]string{"identity_url"}, func(emit func(float64, ...string)) {
			sizes := map[string]float64{}
			services.Range(func(_ string, s *service) { sizes[s.label] += float64(s.cache.Len()) })
			for u, n := range sizes {
				emit(n, u)
			}
		})
}

// fallback is the cache's answer to a 503: the cached context for key if
// it is younger than MaxStale and, on a route with identity events, no
// event for its user was applied since its lookup began and the events are
// not stale (nil otherwise); a denial when it names another user than want
// (see matches). *read records that this lookup has read the cache
// already, so that a lookup retrying through several 503s counts as one
// read; *refused says why a cached context was not served.
func (c *Client) fallback(key [32]byte, want string, read *bool, refused *string) (entry, *denial.Denial) {
	if !*read {
		*read = true
		cacheReads.Inc(c.svc.label)
	}
	e, hit := c.svc.cache.Get(key)
	if !hit || c.o.Now().Sub(e.StoredAt) > time.Duration(c.o.MaxStaleSeconds)*time.Second {
		return nil, nil
	}
	if ev := c.ev; ev != nil {
		// Staleness first: it waits for a fresh follower's replay, whose
		// events the next check must see.
		if ev.stale() {
			*refused = "the identity events on " + ev.stream + " are stale (fail closed)"
			return nil, nil
		}
		if ev.v.covers(e.UserID, e.Asked) {
			// Fetched while the user's event was on its way, or before a
			// replayed one: drop it as the event would have.
			if cur, ok := c.svc.cache.Peek(key); ok && cur == e {
				c.svc.cache.Remove(key)
			}
			*refused = "an identity event for the user was applied after its lookup began"
			return nil, nil
		}
	}
	if den := c.matches(e, want); den != nil {
		return nil, den
	}
	cacheHits.Inc(c.svc.label)
	return e, nil
}
