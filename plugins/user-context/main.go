// Command user-context is the Kong plugin that asks the identity service
// for the caller's user context and forwards it upstream, caching every
// success locally and using the cached copy only when the identity service
// answers 503 (see pkg/usercontext for the full rule).
//
// Allow path: 3 PDK calls (the client's headers, the verified claims for
// match_user, the upstream headers); 2 with match_user off.
package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/Kong/go-pdk"

	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/jwtclaims"
	"github.com/subgate/subgate/pkg/kongx"
	"github.com/subgate/subgate/pkg/usercontext"
)

// Name is the plugin name (and the binary's file name).
const Name = "user-context"

// Config is the route's plugin config: the declared usercontext.Config and
// the decider built from it at instance start.
type Config struct {
	usercontext.Config
	gate *kongx.Gate[*usercontext.Decider]
}

// New returns the declared defaults.
func New() any {
	c := &Config{gate: kongx.Unstarted[*usercontext.Decider](Name)}
	config.Defaults(&c.Config)
	return c
}

// UnmarshalJSON receives Kong's config at instance start and builds the
// decider once; a bad config is logged and denied on every request.
func (c *Config) UnmarshalJSON(b []byte) error {
	c.gate = kongx.Start(Name, b, &c.Config, usercontext.New)
	return nil
}

// Access looks the caller up and forwards the context.
func (c *Config) Access(kong *pdk.PDK) {
	c.gate.Run(kong, func(d *usercontext.Decider, rec *kongx.Record) *denial.Denial {
		headers, den := kongx.RequestHeaders(kong)
		if den != nil {
			return den
		}
		var claims *jwtclaims.Verified
		if d.NeedsClaims() { // match_user: the token jwt-claims verified, if it ran
			raw, err := kong.Ctx.GetSharedAny(jwtclaims.SharedKey)
			if claims, den = d.SharedClaims(raw, err); den != nil {
				return den
			}
		}
		up, res, den := d.Decide(context.Background(), headers, claims)
		if den != nil {
			return den
		}
		rec.CustomerID = res.UserID
		rec.Add(slog.Bool("cached", res.Cached), slog.Int("attempts", res.Attempts), slog.Duration("identity", res.Lookup))
		if res.Cached {
			rec.Add(slog.Duration("cache_age", time.Since(res.StoredAt).Round(time.Millisecond)))
		}
		if err := kongx.SetUpstream(kong, d.Owned(), up); err != nil {
			return denial.New(denial.InternalError, "could not set the upstream headers")
		}
		return nil
	})
}

func main() { kongx.Serve(Name, New, kongx.PriorityUserContext, usercontext.Config{}) }
