// Package ownercheck is the decision behind the subscription-owner plugin:
// read the subscription id (and, on routes that say so, the country) from
// the path, the customer and country from jwt-claims' verified claims, and
// ask the ownership store whether that customer owns that subscription.
// Unknown and foreign subscriptions are refused alike, and a store that
// cannot answer is a 503: never an allow.
package ownercheck

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/claims"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/ownership"
	"github.com/subgate/subgate/pkg/subpath"
)

// Country sources.
const (
	FromClaim = "claim"
	FromPath  = "path"
)

// Config is a route's validated configuration.
type Config struct {
	Prefix          string   // ownership key prefix
	Patterns        []string // where the id is in the path
	CountrySource   string   // FromClaim (default) or FromPath
	CustomerIDClaim string   // "" uses jwt-claims' customer id
	CountryClaim    string   // "" uses jwt-claims' country
	Timeout         time.Duration
	RetryAfter      int           // seconds, on 503
	CacheTTL        time.Duration // 0: no cache of positive answers
	CacheSize       int
}

// Decider decides for one route. Safe for concurrent use.
type Decider struct {
	cfg      Config
	patterns []subpath.Pattern
	store    *ownership.Store
	cache    *expirable.LRU[string, struct{}]
}

// New validates cfg and builds the decider on rdb.
func New(cfg Config, rdb redis.UniversalClient) (*Decider, error) {
	if cfg.CountrySource == "" {
		cfg.CountrySource = FromClaim
	}
	if cfg.CountrySource != FromClaim && cfg.CountrySource != FromPath {
		return nil, fmt.Errorf("country_source %q: want %q or %q", cfg.CountrySource, FromClaim, FromPath)
	}
	if len(cfg.Patterns) == 0 {
		return nil, errors.New("path_patterns is empty")
	}
	if cfg.Timeout <= 0 {
		return nil, errors.New("timeout_ms must be positive")
	}
	d := &Decider{cfg: cfg, store: ownership.NewStore(rdb, cfg.Prefix)}
	for _, p := range cfg.Patterns {
		c, err := subpath.Compile(p)
		if err != nil {
			return nil, err
		}
		if cfg.CountrySource == FromPath && !c.HasCountry() {
			return nil, fmt.Errorf("country_source is path, but pattern %q has no %s", p, subpath.Country)
		}
		d.patterns = append(d.patterns, c)
	}
	if cfg.CacheTTL > 0 {
		if cfg.CacheSize <= 0 {
			return nil, errors.New("cache_size must be positive when the cache is on")
		}
		d.cache = expirable.NewLRU[string, struct{}](cfg.CacheSize, nil, cfg.CacheTTL)
	}
	return d, nil
}

// Result is an allowed request's facts, for the audit line.
type Result struct {
	Country        string
	SubscriptionID int64
	Cached         bool
}

// Decide checks the request. v comes from kong.ctx.shared, never from the client.
func (d *Decider) Decide(ctx context.Context, path string, v *claims.Verified) (*Result, *denial.Denial) {
	m, ok, err := subpath.Find(d.patterns, path)
	if err != nil || !ok {
		return nil, denial.New(denial.SubscriptionIDInvalid, "the path carries no subscription id this route accepts")
	}
	id, err := ownership.ParseID(m.ID)
	if err != nil {
		return nil, denial.New(denial.SubscriptionIDInvalid, "the subscription id in the path is not a canonical positive integer")
	}
	rawCountry := v.Country
	if d.cfg.CountrySource == FromPath {
		rawCountry = m.Country
	} else if d.cfg.CountryClaim != "" {
		rawCountry, _ = v.String(d.cfg.CountryClaim)
	}
	country, err := ownership.Country(rawCountry)
	if err != nil {
		if d.cfg.CountrySource == FromPath {
			return nil, denial.New(denial.SubscriptionIDInvalid, "the country in the path is not a two-letter code")
		}
		// The token says nothing usable about the country: nothing can be owned.
		return nil, denial.New(denial.SubscriptionForbidden, "")
	}
	rawCustomer := v.CustomerID
	if d.cfg.CustomerIDClaim != "" {
		rawCustomer, _ = v.String(d.cfg.CustomerIDClaim)
	}
	customer, err := ownership.ParseUUID(rawCustomer)
	if err != nil {
		return nil, denial.New(denial.SubscriptionForbidden, "") // a non-UUID customer owns nothing
	}
	res := &Result{Country: country, SubscriptionID: id}
	key := country + ":" + strconv.FormatInt(id, 10) + ":" + customer.String()
	if d.cache != nil {
		if _, hit := d.cache.Get(key); hit {
			res.Cached = true
			return res, nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	owns, err := d.store.Owns(ctx, country, id, customer)
	if err != nil {
		return nil, denial.New(denial.OwnershipUnavailable, "").WithRetryAfter(d.cfg.RetryAfter)
	}
	if !owns {
		return nil, denial.New(denial.SubscriptionForbidden, "") // unknown and foreign read the same
	}
	if d.cache != nil {
		d.cache.Add(key, struct{}{})
	}
	return res, nil
}
