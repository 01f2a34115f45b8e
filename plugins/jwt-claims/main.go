// Command jwt-claims is the Kong plugin that verifies the bearer JWT and
// hands its claims to the plugins after it and to the upstream.
//
// Allow path: 3 PDK calls (read the request headers, store the claims in
// kong.ctx.shared, set the upstream headers).
package main

import (
	"log/slog"

	"github.com/Kong/go-pdk"

	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/jwtclaims"
	"github.com/subgate/subgate/pkg/kongx"
)

// Name is the plugin name (and the binary's file name).
const Name = "jwt-claims"

// Config is the route's plugin config: the declared jwtclaims.Config and
// the decider built from it at instance start.
type Config struct {
	jwtclaims.Config
	gate *kongx.Gate[*jwtclaims.Decider]
}

// New returns the declared defaults.
func New() any {
	c := &Config{gate: kongx.Unstarted[*jwtclaims.Decider](Name)}
	config.Defaults(&c.Config)
	return c
}

// UnmarshalJSON receives Kong's config at instance start and builds the
// decider once; a bad config is logged and denied on every request.
func (c *Config) UnmarshalJSON(b []byte) error {
	c.gate = kongx.Start(Name, b, &c.Config, jwtclaims.New)
	return nil
}

// Access verifies the token and passes the claims on.
func (c *Config) Access(kong *pdk.PDK) {
	c.gate.Run(kong, func(d *jwtclaims.Decider, rec *kongx.Record) *denial.Denial {
		headers, den := kongx.RequestHeaders(kong)
		if den != nil {
			return den
		}
		res, den := d.Decide(headers)
		if den != nil {
			return den
		}
		rec.CustomerID = res.Claims.CustomerID
		rec.Add(slog.Bool("cached", res.Cached), slog.String("kid", res.Kid), slog.String("jti", res.JTI))
		if err := kongx.StoreClaims(kong, res.Claims); err != nil {
			return denial.New(denial.InternalError, "could not store the verified claims")
		}
		if err := kongx.SetUpstream(kong, d.Owned(), res.Upstream); err != nil {
			return denial.New(denial.InternalError, "could not set the upstream headers")
		}
		return nil
	})
}

func main() { kongx.Serve(Name, New, kongx.PriorityJWTClaims, jwtclaims.Config{}) }
