// Command subgate is the Kong plugin that runs the checks of the four-plugin
// chain (jwt-claims, subscription-owner, payment-token, user-context) in one
// access event, in the same order, each configured by its own section
// (jwt required; ownership, payment, identity when present) with exactly
// that plugin's config. The decisions are the same packages' (see
// chain.Decider); only the PDK traffic differs.
//
// Allow path: at most 3 PDK calls (every request header; the path, only
// with an ownership section; every owned upstream header, set or cleared).
// The claims stay in Go: no kong.ctx.shared.
package main

import (
	"context"

	"github.com/Kong/go-pdk"

	"github.com/subgate/subgate/pkg/chain"
	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/kongx"
)

// Name is the plugin name (and the binary's file name).
const Name = "subgate"

// Config is the route's plugin config: the declared chain.Config and
// the decider built from it at instance start.
type Config struct {
	chain.Config
	gate *kongx.Gate[*chain.Decider]
}

// New returns the declared defaults (absent sections stay absent).
func New() any {
	c := &Config{gate: kongx.Unstarted[*chain.Decider](Name)}
	config.Defaults(&c.Config)
	return c
}

// UnmarshalJSON receives Kong's config at instance start and builds the
// deciders once; a bad config is logged and denied on every request.
func (c *Config) UnmarshalJSON(b []byte) error {
	c.gate = kongx.Start(Name, b, &c.Config, chain.New)
	return nil
}

// Access runs the whole chain.
func (c *Config) Access(kong *pdk.PDK) {
	c.gate.Run(kong, func(d *chain.Decider, rec *kongx.Record) *denial.Denial {
		headers, den := kongx.RequestHeaders(kong)
		if den != nil {
			return den
		}
		path := ""
		if d.NeedsPath() {
			var err error
			if path, err = kong.Request.GetPath(); err != nil {
				return denial.New(denial.InternalError, "could not read the request path")
			}
		}
		up, den := d.Decide(context.Background(), headers, path, rec)
		if den != nil {
			return den
		}
		if err := kongx.SetUpstream(kong, d.Owned(), up); err != nil {
			return denial.New(denial.InternalError, "could not set the upstream headers")
		}
		return nil
	})
}

func main() { kongx.Serve(Name, New, kongx.PrioritySubgate, chain.Config{}) }
