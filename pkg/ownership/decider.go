package ownership

// The decision behind the subscription-owner plugin: read the subscription
// id (and, on routes that say so, the country) from the path, the customer
// and country from jwt-claims' verified claims, and ask the store whether
// that customer owns that subscription. Unknown and foreign subscriptions
// are refused alike, and a store that cannot answer is a 503: never an
// allow.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/check"
	"github.com/subgate/subgate/pkg/claims"
	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/redisconn"
	"github.com/subgate/subgate/pkg/upstream"
)

// Country sources.
const (
	FromClaim = "claim"
	FromPath  = "path"
)

// Config is the subscription-owner plugin's config, declared once (see
// pkg/config).
type Config struct {
	Redis             redisconn.Config `json:"redis" kong:"required" doc:"Where the ownership pairs live."`
	KeyPrefix         string           `json:"key_prefix" default:"$ownership_prefix" doc:"Ownership key prefix (as the writer's)."`
	PathPatterns      []string         `json:"path_patterns" default:"[\"/subscriptions/{subscription_id}\"]" kong:"len_min=1" elements:"match=$path_pattern" doc:"Where the id (and optionally {country}) is in the path; the first match wins."`
	CountrySource     string           `json:"country_source" default:"claim" kong:"one_of=claim|path" doc:"Take the country from the verified claims or from the path."`
	CustomerIDClaim   string           `json:"customer_id_claim" doc:"Claim holding the customer UUID; empty uses jwt-claims' customer id."`
	CountryClaim      string           `json:"country_claim" doc:"Claim holding the country; empty uses jwt-claims' country."`
	TimeoutMs         int              `json:"timeout_ms" default:"250" kong:"gt=0" doc:"Deadline of the ownership lookup (until one has had an answer: twice redis.dial_timeout_ms more, for the first dial); past it the answer is 503."`
	RetryAfterSeconds int              `json:"retry_after_seconds" default:"1" kong:"between=0|3600" doc:"Retry-After sent with 503 ownership_unavailable."`
	CacheTTLSeconds   int              `json:"cache_ttl_seconds" default:"0" kong:"between=0|3600" doc:"How long a positive answer is cached in the plugin server (0: never)."`
	CacheSize         int              `json:"cache_size" default:"10000" kong:"between=1|10000000" doc:"Entries of that cache."`
	VerifiedHeader    string           `json:"verified_header" kong:"match=$header_name" doc:"Upstream header set to {country}:{subscription_id} on success."`
	config.Decisions
}

// PathPattern is what Kong's schema can say of a path pattern: it starts
// with / and holds {subscription_id}; Check (Compile) says the rest.
var PathPattern = config.Pattern("path_pattern", "^/.*{subscription_id}", "expected a path starting with / that holds {subscription_id}")

// Check is what Kong's schema cannot say: each pattern compiles (known
// placeholders, each once, plain segments), and country_source path has
// {country} in every pattern.
func (c Config) Check() error {
	var errs []error
	for _, p := range c.PathPatterns {
		pat, err := Compile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("path_patterns: %w", err))
		} else if c.CountrySource == FromPath && !pat.HasCountry() {
			errs = append(errs, fmt.Errorf("country_source is path, but pattern %q has no %s", p, CountryPlaceholder))
		}
	}
	return errors.Join(errs...)
}

// Decider decides for one route. Safe for concurrent use.
type Decider struct {
	cfg      Config
	patterns []Pattern
	store    *Store
	cache    *expirable.LRU[string, struct{}]
	owned    []string    // verified_header, when set
	answered atomic.Bool // a lookup has had Redis's answer (see lookupTimeout)
}

// New builds the decider on the process-wide Redis client for cfg.Redis.
func New(cfg Config) (*Decider, error) {
	rdb, err := redisconn.Shared(cfg.Redis, "redis")
	if err != nil {
		return nil, err
	}
	return NewWith(cfg, rdb)
}

// NewWith builds the decider on rdb, reporting every problem at once.
func NewWith(cfg Config, rdb redis.UniversalClient) (*Decider, error) {
	config.FillZero(&cfg)
	check := cfg
	check.Redis = redisconn.Config{Addresses: []string{"given:6379"}} // rdb stands for the Redis settings
	config.FillZero(&check.Redis)
	if err := config.Validate(&check); err != nil {
		return nil, err
	}
	d := &Decider{cfg: cfg, store: NewStore(rdb, cfg.KeyPrefix)}
	for _, p := range cfg.PathPatterns {
		c, _ := Compile(p) // Check compiled each
		d.patterns = append(d.patterns, c)
	}
	if cfg.VerifiedHeader != "" {
		d.owned, _ = upstream.Own([]string{cfg.VerifiedHeader}) // a valid name: the declaration's pattern
	}
	if cfg.CacheTTLSeconds > 0 {
		d.cache = expirable.NewLRU[string, struct{}](cfg.CacheSize, nil, time.Duration(cfg.CacheTTLSeconds)*time.Second)
	}
	return d, nil
}

// Reads: the subscription id is in the path, the customer in the claims.
func (d *Decider) Reads() check.Reads { return check.Path | check.Claims }

// Owned lists the upstream headers the route owns (verified_header).
func (d *Decider) Owned() []string { return d.owned }

// Decide lets the request through only when the caller owns the
// subscription its path names.
func (d *Decider) Decide(ctx context.Context, req *check.Request, audit *check.Audit) (check.Decision, *denial.Denial) {
	path, den := req.ReadPath()
	if den != nil {
		return check.Decision{}, den
	}
	res, den := d.lookup(ctx, path, req.Claims)
	if den != nil {
		return check.Decision{}, den
	}
	id := strconv.FormatInt(res.SubscriptionID, 10)
	audit.Add(slog.String("country", res.Country), slog.String("subscription_id", id), slog.Bool("cached", res.Cached), slog.Duration("redis", res.Lookup))
	if len(d.owned) == 0 {
		return check.Decision{}, nil
	}
	return check.Decision{Upstream: map[string]string{d.owned[0]: res.Country + ":" + id}}, nil
}

// Result is an allowed request's facts, for the audit line.
type Result struct {
	Country        string
	SubscriptionID int64
	Cached         bool
	Lookup         time.Duration // the Redis round trip; 0 when cached
}

// lookupTimeout is timeout_ms, and until a lookup has had an answer twice
// redis.dial_timeout_ms more: an instance's first lookup may be the first
// use of its Redis client, which first asks a Sentinel for the primary and
// dials it, and the first request after a start must be answered as a
// later one (a 503 there was seen on a loaded machine).
func (d *Decider) lookupTimeout() time.Duration {
	t := time.Duration(d.cfg.TimeoutMs) * time.Millisecond
	if !d.answered.Load() {
		t += 2 * time.Duration(d.cfg.Redis.DialTimeoutMs) * time.Millisecond
	}
	return t
}

// lookup checks the request. v comes from jwt-claims, never from the client.
func (d *Decider) lookup(ctx context.Context, path string, v *claims.Verified) (*Result, *denial.Denial) {
	m, ok, err := Find(d.patterns, path)
	if err != nil || !ok {
		return nil, denial.New(denial.SubscriptionIDInvalid, "the path carries no subscription id this route accepts")
	}
	id, err := ParseID(m.ID)
	if err != nil {
		return nil, denial.New(denial.SubscriptionIDInvalid, "the subscription id in the path is not a canonical positive integer")
	}
	rawCountry := v.Country
	if d.cfg.CountrySource == FromPath {
		rawCountry = m.Country
	} else if d.cfg.CountryClaim != "" {
		rawCountry, _ = v.String(d.cfg.CountryClaim)
	}
	country, err := Country(rawCountry)
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
	customer, err := ParseUUID(rawCustomer)
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
	ctx, cancel := context.WithTimeout(ctx, d.lookupTimeout())
	defer cancel()
	began := time.Now()
	owns, err := d.store.Owns(ctx, country, id, customer)
	res.Lookup = time.Since(began)
	if err == nil {
		d.answered.Store(true)
	}
	if err != nil {
		return nil, denial.New(denial.OwnershipUnavailable, "").WithRetryAfter(d.cfg.RetryAfterSeconds).
			WithCause(fmt.Sprintf("ownership lookup failed after %v: %v", res.Lookup.Round(time.Millisecond), err))
	}
	if !owns {
		return nil, denial.New(denial.SubscriptionForbidden, "") // unknown and foreign read the same
	}
	if d.cache != nil {
		d.cache.Add(key, struct{}{})
	}
	return res, nil
}
