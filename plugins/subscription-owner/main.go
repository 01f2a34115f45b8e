// Command subscription-owner is the Kong plugin that lets a request through
// only when the customer verified by jwt-claims owns the subscription named
// in the URL, by a Redis lookup of the {country}:{subscription_id} pair.
//
// Allow path: 2 PDK calls (the path, the shared claims); a third when
// verified_header is set.
package main

import (
	"context"
	"log/slog"
	"strconv"

	"github.com/Kong/go-pdk"

	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/kongx"
	"github.com/subgate/subgate/pkg/ownership"
)

// Name is the plugin name (and the binary's file name).
const Name = "subscription-owner"

// Config is the route's plugin config: the declared ownership.Config and
// the decider built from it at instance start.
type Config struct {
	ownership.Config
	gate *kongx.Gate[*ownership.Decider]
}

// New returns the declared defaults.
func New() any {
	c := &Config{gate: kongx.Unstarted[*ownership.Decider](Name)}
	config.Defaults(&c.Config)
	return c
}

// UnmarshalJSON receives Kong's config at instance start and builds the
// decider once; a bad config is logged and denied on every request.
func (c *Config) UnmarshalJSON(b []byte) error {
	c.gate = kongx.Start(Name, b, &c.Config, ownership.New)
	return nil
}

// Access checks ownership.
func (c *Config) Access(kong *pdk.PDK) {
	c.gate.Run(kong, func(d *ownership.Decider, rec *kongx.Record) *denial.Denial {
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
		rec.Add(slog.String("country", res.Country), slog.String("subscription_id", strconv.FormatInt(res.SubscriptionID, 10)), slog.Bool("cached", res.Cached), slog.Duration("redis", res.Lookup))
		if err := kongx.SetUpstream(kong, d.Owned(), d.Upstream(res)); err != nil {
			return denial.New(denial.InternalError, "could not set the upstream headers")
		}
		return nil
	})
}

func main() { kongx.Serve(Name, New, kongx.PrioritySubscriptionOwner, ownership.Config{}) }
