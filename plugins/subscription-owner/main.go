// Command subscription-owner is the Kong plugin that lets a request through
// only when the customer verified by jwt-claims owns the subscription named
// in the URL, by a Redis lookup of the {country}:{subscription_id} pair.
//
// Allow path: 2 PDK calls (the path, the shared claims); a third when
// verified_header is set.
package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/Kong/go-pdk"

	"github.com/subgate/subgate/pkg/audit"
	"github.com/subgate/subgate/pkg/buildinfo"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/kongx"
	"github.com/subgate/subgate/pkg/ownercheck"
	"github.com/subgate/subgate/pkg/redisconn"
)

// Name is the plugin name (and the binary's file name).
const Name = "subscription-owner"

// Config is the route's plugin configuration; its fields are Kong's schema.
type Config struct {
	Redis             redisconn.Options `json:"redis"`
	KeyPrefix         string            `json:"key_prefix"`
	PathPatterns      []string          `json:"path_patterns"`
	CountrySource     string            `json:"country_source"`
	CustomerIDClaim   string            `json:"customer_id_claim"`
	CountryClaim      string            `json:"country_claim"`
	TimeoutMs         int               `json:"timeout_ms"`
	RetryAfterSeconds int               `json:"retry_after_seconds"`
	CacheTTLSeconds   int               `json:"cache_ttl_seconds"`
	CacheSize         int               `json:"cache_size"`
	VerifiedHeader    string            `json:"verified_header"`

	gate *kongx.Gate[*decider]
}

// decider is the route's decision plus what the handler needs around it.
type decider struct {
	*ownercheck.Decider
	owned []string // verified_header, when set
}

// New returns the defaults; Kong's null for an unset field keeps them.
func New() any {
	return &Config{
		KeyPrefix:         "subgate:own:",
		CountrySource:     ownercheck.FromClaim,
		TimeoutMs:         250,
		RetryAfterSeconds: 1,
		CacheSize:         10000,
		gate:              kongx.Unstarted[*decider](Name),
	}
}

// UnmarshalJSON receives Kong's config at instance start and builds the
// decider once; a bad config is logged and denied on every request.
func (c *Config) UnmarshalJSON(b []byte) error {
	type fields Config // same fields without methods: no recursion
	err := json.Unmarshal(b, (*fields)(c))
	c.gate = kongx.Start(Name, b, err, c.build)
	return nil
}

func (c *Config) build() (*decider, error) {
	patterns := c.PathPatterns
	if patterns == nil {
		patterns = []string{"/subscriptions/{subscription_id}"}
	}
	rdb, err := redisconn.Shared(c.Redis)
	if err != nil {
		return nil, err
	}
	d, err := ownercheck.New(ownercheck.Config{
		Prefix:          c.KeyPrefix,
		Patterns:        patterns,
		CountrySource:   c.CountrySource,
		CustomerIDClaim: c.CustomerIDClaim,
		CountryClaim:    c.CountryClaim,
		Timeout:         time.Duration(c.TimeoutMs) * time.Millisecond,
		RetryAfter:      c.RetryAfterSeconds,
		CacheTTL:        time.Duration(c.CacheTTLSeconds) * time.Second,
		CacheSize:       c.CacheSize,
	}, rdb)
	if err != nil {
		return nil, err
	}
	out := &decider{Decider: d}
	if c.VerifiedHeader != "" {
		out.owned = []string{http.CanonicalHeaderKey(c.VerifiedHeader)}
	}
	return out, nil
}

// Access checks ownership.
func (c *Config) Access(kong *pdk.PDK) {
	c.gate.Run(kong, func(d *decider, rec *audit.Record) *denial.Denial {
		path, err := kong.Request.GetPath()
		if err != nil {
			return denial.New(denial.InternalError, "could not read the request path")
		}
		v, den := kongx.LoadClaims(kong, Name)
		if den != nil {
			return den
		}
		rec.CustomerID = v.CustomerID
		res, den := d.Decide(context.Background(), path, v)
		if den != nil {
			return den
		}
		id := strconv.FormatInt(res.SubscriptionID, 10)
		rec.Add(slog.String("country", res.Country), slog.String("subscription_id", id), slog.Bool("cached", res.Cached))
		if len(d.owned) > 0 {
			if err := kongx.SetUpstream(kong, d.owned, map[string]string{d.owned[0]: res.Country + ":" + id}); err != nil {
				return denial.New(denial.InternalError, "could not set the upstream headers")
			}
		}
		return nil
	})
}

func main() { kongx.Serve(Name, New, buildinfo.PrioritySubscriptionOwner) }
