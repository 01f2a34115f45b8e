// Command payment-token is the Kong plugin that admits a request only with a
// valid payment-access-token from the payment service: signature with the
// algorithm fixed per key, expiry, issued to the customer jwt-claims
// verified, granting the route's entitlements, and not revoked by a payment
// event since it was issued.
//
// Allow path: 2 PDK calls (the request headers, the shared claims). Revocation
// needs no per-request Redis call: each plugin server follows the payment
// event stream in the background.
package main

import (
	"log/slog"

	"github.com/Kong/go-pdk"

	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/kongx"
	"github.com/subgate/subgate/pkg/paytoken"
)

// Name is the plugin name (and the binary's file name).
const Name = "payment-token"

// Config is the route's plugin config: the declared paytoken.Config and
// the decider built from it at instance start.
type Config struct {
	paytoken.Config
	gate *kongx.Gate[*paytoken.Decider]
}

// New returns the declared defaults.
func New() any {
	c := &Config{gate: kongx.Unstarted[*paytoken.Decider](Name)}
	config.Defaults(&c.Config)
	return c
}

// UnmarshalJSON receives Kong's config at instance start and builds the
// decider once; a bad config is logged and denied on every request.
func (c *Config) UnmarshalJSON(b []byte) error {
	c.gate = kongx.Start(Name, b, &c.Config, paytoken.New)
	return nil
}

// Access checks the payment-access-token.
func (c *Config) Access(kong *pdk.PDK) {
	c.gate.Run(kong, func(d *paytoken.Decider, rec *kongx.Record) *denial.Denial {
		headers, den := kongx.RequestHeaders(kong)
		if den != nil {
			return den
		}
		token, den := d.TokenFrom(headers)
		if den != nil {
			return den
		}
		v, den := kongx.LoadClaims(kong, Name)
		if den != nil {
			return den
		}
		rec.CustomerID = v.CustomerID
		res, den := d.Decide(token, v.CustomerID)
		if den != nil {
			return den
		}
		rec.Add(slog.String("jti", res.TokenID), slog.String("kid", res.Kid), slog.Bool("cached", res.Cached))
		return nil
	})
}

func main() { kongx.Serve(Name, New, kongx.PriorityPaymentToken, paytoken.Config{}) }
