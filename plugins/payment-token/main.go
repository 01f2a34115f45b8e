// Command payment-token is the Kong plugin that admits a request only with a
// valid payment-access-token from the payment service: signature with the
// algorithm fixed per key, expiry, issued to the customer jwt-claims
// verified, granting the route's entitlements, and not revoked by a payment
// event since it was issued.
//
// Allow path: 2 PDK calls (the token header, the shared claims). Revocation
// needs no per-request Redis call: each plugin server follows the payment
// event stream in the background.
package main

import (
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/Kong/go-pdk"

	"github.com/subgate/subgate/pkg/audit"
	"github.com/subgate/subgate/pkg/buildinfo"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/jwtverify"
	"github.com/subgate/subgate/pkg/kongx"
	"github.com/subgate/subgate/pkg/payevents"
	"github.com/subgate/subgate/pkg/paytoken"
	"github.com/subgate/subgate/pkg/redisconn"
)

// Name is the plugin name (and the binary's file name).
const Name = "payment-token"

// Config is the route's plugin configuration; its fields are Kong's schema.
type Config struct {
	TokenHeader             string            `json:"token_header"`
	Keys                    []jwtverify.Key   `json:"keys"`
	JWKSURL                 string            `json:"jwks_url"`
	Issuers                 []string          `json:"issuers"`
	Audiences               []string          `json:"audiences"`
	LeewaySeconds           int               `json:"leeway_seconds"`
	CacheSize               int               `json:"cache_size"`
	RequiredEntitlements    []string          `json:"required_entitlements"`
	Redis                   redisconn.Options `json:"redis"`
	EventsStream            string            `json:"events_stream"`
	MaxTokenLifetimeSeconds int               `json:"max_token_lifetime_seconds"`
	StaleAfterSeconds       int               `json:"stale_after_seconds"`
	RetryAfterSeconds       int               `json:"retry_after_seconds"`

	gate *kongx.Gate[*decider]
}

type decider struct {
	*paytoken.Checker
	header string
}

// New returns the defaults; Kong's null for an unset field keeps them.
func New() any {
	return &Config{
		TokenHeader:             "X-Payment-Token",
		LeewaySeconds:           5,
		CacheSize:               10000,
		EventsStream:            payevents.DefaultStream,
		MaxTokenLifetimeSeconds: int(paytoken.DefaultTTL / time.Second),
		StaleAfterSeconds:       10,
		RetryAfterSeconds:       1,
		gate:                    kongx.Unstarted[*decider](Name),
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
	if c.TokenHeader == "" {
		return nil, errors.New("token_header is empty")
	}
	if c.MaxTokenLifetimeSeconds <= 0 || c.StaleAfterSeconds <= 0 {
		return nil, errors.New("max_token_lifetime_seconds and stale_after_seconds must be positive")
	}
	leeway := time.Duration(c.LeewaySeconds) * time.Second
	f, err := payevents.Shared(c.Redis, payevents.FollowerOptions{
		Stream: c.EventsStream,
		Window: time.Duration(c.MaxTokenLifetimeSeconds)*time.Second + leeway,
	})
	if err != nil {
		return nil, err
	}
	stale := payevents.Bound{F: f, After: time.Duration(c.StaleAfterSeconds) * time.Second}
	ch, err := paytoken.NewChecker(paytoken.CheckerOptions{
		Verify: jwtverify.Options{Keys: c.Keys, JWKSURL: c.JWKSURL, Issuers: c.Issuers, Audiences: c.Audiences,
			Leeway: leeway, CacheSize: c.CacheSize},
		Required:    c.RequiredEntitlements,
		Revocations: f.Revocations(),
		Stale:       stale.Stale,
		RetryAfter:  c.RetryAfterSeconds,
	})
	if err != nil {
		return nil, err
	}
	return &decider{Checker: ch, header: c.TokenHeader}, nil
}

// Access checks the payment-access-token.
func (c *Config) Access(kong *pdk.PDK) {
	c.gate.Run(kong, func(d *decider, rec *audit.Record) *denial.Denial {
		token, err := kong.Request.GetHeader(d.header)
		if err != nil {
			return denial.New(denial.InternalError, "could not read the request headers")
		}
		v, den := kongx.LoadClaims(kong, Name)
		if den != nil {
			return den
		}
		rec.CustomerID = v.CustomerID
		res, den := d.Check(token, v.CustomerID)
		if den != nil {
			return den
		}
		rec.Add(slog.String("payment_token_id", res.TokenID), slog.Bool("cached", res.Cached))
		return nil
	})
}

func main() { kongx.Serve(Name, New, buildinfo.PriorityPaymentToken) }
