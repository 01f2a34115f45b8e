// Command jwt-claims is the Kong plugin that verifies the bearer JWT and
// hands its claims to the plugins after it and to the upstream.
//
// Allow path: 3 PDK calls (read the token header, store the claims in
// kong.ctx.shared, set the upstream headers).
package main

import (
	"encoding/json"
	"log/slog"
	"strings"
	"time"

	"github.com/Kong/go-pdk"

	"github.com/subgate/subgate/pkg/audit"
	"github.com/subgate/subgate/pkg/buildinfo"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/jwtclaims"
	"github.com/subgate/subgate/pkg/jwtverify"
	"github.com/subgate/subgate/pkg/kongx"
)

// Name is the plugin name (and the binary's file name).
const Name = "jwt-claims"

// Config is the route's plugin configuration; its fields are Kong's schema.
type Config struct {
	TokenHeader           string            `json:"token_header"`
	TokenCookie           string            `json:"token_cookie"`
	Keys                  []jwtverify.Key   `json:"keys"`
	JWKSURL               string            `json:"jwks_url"`
	JWKSRefreshSeconds    int               `json:"jwks_refresh_seconds"`
	JWKSMinRefetchSeconds int               `json:"jwks_min_refetch_seconds"`
	JWKSMaxStaleSeconds   int               `json:"jwks_max_stale_seconds"`
	JWKSTimeoutMs         int               `json:"jwks_timeout_ms"`
	Issuers               []string          `json:"issuers"`
	Audiences             []string          `json:"audiences"`
	LeewaySeconds         int               `json:"leeway_seconds"`
	RequiredClaims        []string          `json:"required_claims"`
	MaxTokenBytes         int               `json:"max_token_bytes"`
	CustomerIDClaim       string            `json:"customer_id_claim"`
	CountryClaim          string            `json:"country_claim"`
	UpstreamHeaders       map[string]string `json:"upstream_headers"`
	HideCredentials       bool              `json:"hide_credentials"`
	CacheSize             int               `json:"cache_size"`

	gate *kongx.Gate[*jwtclaims.Decider]
}

// New returns the defaults; Kong's null for an unset field keeps them.
func New() any {
	return &Config{
		TokenHeader:           "Authorization",
		JWKSRefreshSeconds:    300,
		JWKSMinRefetchSeconds: 30,
		JWKSMaxStaleSeconds:   3600,
		JWKSTimeoutMs:         5000,
		LeewaySeconds:         30,
		MaxTokenBytes:         jwtverify.DefaultMaxTokenBytes,
		CustomerIDClaim:       "sub",
		CountryClaim:          "country",
		CacheSize:             10000,
		gate:                  kongx.Unstarted[*jwtclaims.Decider](Name),
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

func (c *Config) build() (*jwtclaims.Decider, error) {
	sec := func(n int) time.Duration { return time.Duration(n) * time.Second }
	return jwtclaims.New(jwtclaims.Config{
		TokenHeader:     c.TokenHeader,
		TokenCookie:     c.TokenCookie,
		CustomerIDClaim: c.CustomerIDClaim,
		CountryClaim:    c.CountryClaim,
		UpstreamHeaders: c.UpstreamHeaders,
		HideCredentials: c.HideCredentials,
		Verify: jwtverify.Options{
			Keys:            c.Keys,
			JWKSURL:         c.JWKSURL,
			JWKSRefresh:     sec(c.JWKSRefreshSeconds),
			JWKSMinInterval: sec(c.JWKSMinRefetchSeconds),
			JWKSMaxStale:    sec(c.JWKSMaxStaleSeconds),
			JWKSTimeout:     time.Duration(c.JWKSTimeoutMs) * time.Millisecond,
			Issuers:         c.Issuers,
			Audiences:       c.Audiences,
			Leeway:          sec(c.LeewaySeconds),
			RequiredClaims:  c.RequiredClaims,
			MaxTokenBytes:   c.MaxTokenBytes,
			CacheSize:       c.CacheSize,
		},
	})
}

// Access verifies the token and passes the claims on.
func (c *Config) Access(kong *pdk.PDK) {
	c.gate.Run(kong, func(d *jwtclaims.Decider, rec *audit.Record) *denial.Denial {
		header, cookie, err := readToken(kong, d)
		if err != nil {
			return denial.New(denial.InternalError, "could not read the request headers")
		}
		dec, den := d.Decide(header, cookie)
		if den != nil {
			return den
		}
		rec.CustomerID = dec.Claims.CustomerID
		rec.Add(slog.Bool("cached", dec.FromCache))
		if err := kongx.StoreClaims(kong, dec.Claims); err != nil {
			return denial.New(denial.InternalError, "could not store the verified claims")
		}
		if err := kongx.SetUpstream(kong, d.Owned(), dec.Upstream); err != nil {
			return denial.New(denial.InternalError, "could not set the upstream headers")
		}
		return nil
	})
}

// readToken costs one PDK call: the token header alone, or every header
// when a cookie may carry the token.
func readToken(kong *pdk.PDK, d *jwtclaims.Decider) (header, cookie string, err error) {
	if !d.UsesCookie() {
		header, err = kong.Request.GetHeader(d.TokenHeader())
		return header, "", err
	}
	all, err := kong.Request.GetHeaders(-1)
	if err != nil {
		return "", "", err
	}
	return first(all, d.TokenHeader()), first(all, "Cookie"), nil
}

// first reads a header from Kong's lower-cased header table.
func first(h map[string][]string, name string) string {
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, name) {
			return v[0]
		}
	}
	return ""
}

func main() { kongx.Serve(Name, New, buildinfo.PriorityJWTClaims) }
