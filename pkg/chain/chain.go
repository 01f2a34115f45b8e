// Package chain is the subgate plugin's decision: the four checks of the
// plugin chain (jwt-claims, subscription-owner, payment-token,
// user-context) in one access event, in the chain's order, each by its own
// package's Decide. A route moves from the chain to subgate by nesting each
// plugin's config under its section; only how the request is read from and
// written to Kong differs: one read of every header, the path when the
// ownership section is present, one write of every owned upstream header,
// and the claims stay in Go (no kong.ctx.shared). Only the subgate plugin
// imports it, so the other plugins' binaries do not carry all four checks.
package chain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/jwtclaims"
	"github.com/subgate/subgate/pkg/kongx"
	"github.com/subgate/subgate/pkg/ownership"
	"github.com/subgate/subgate/pkg/paytoken"
	"github.com/subgate/subgate/pkg/usercontext"
)

// Config is the subgate plugin's config, declared once (see
// pkg/config): each section is exactly the config of the plugin that does
// the same job; a check runs only when its section is present. A section's
// own log_decisions (a plugin's config nests unchanged) must stay at its
// default: the top-level one applies to the one decision subgate makes.
type Config struct {
	JWT       jwtclaims.Config    `json:"jwt" kong:"required" doc:"The jwt-claims check (always runs first): jwt-claims' config."`
	Ownership *ownership.Config   `json:"ownership" doc:"The subscription-owner check, when present: subscription-owner's config."`
	Payment   *paytoken.Config    `json:"payment" doc:"The payment-token check, when present: payment-token's config."`
	Identity  *usercontext.Config `json:"identity" doc:"The user-context check, when present: user-context's config."`
	config.Decisions
}

// Decider decides for one subgate route. Safe for concurrent use.
type Decider struct {
	jwt       *jwtclaims.Decider
	ownership *ownership.Decider // nil: the section is absent
	payment   *paytoken.Decider
	identity  *usercontext.Decider
	owned     []string // every section's owned upstream headers, without duplicates
}

// New builds the decider of every present section with that section's
// own constructor, reporting every problem at once, each under its section.
func New(c Config) (*Decider, error) {
	var errs []error
	section := func(name string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	// A section's own log_decisions would be ignored (the top-level one
	// governs subgate's one decision): anything but the default is refused
	// rather than silently not applied.
	var def config.Decisions
	config.Defaults(&def)
	decisions := func(name string, d config.Decisions) {
		if d != def {
			section(name, fmt.Errorf("log_decisions %q: set log_decisions at the top level of subgate's config; a section's is not used", d.LogDecisions))
		}
	}
	ch := &Decider{}
	var err error
	ch.jwt, err = jwtclaims.New(c.JWT)
	section("jwt", err)
	decisions("jwt", c.JWT.Decisions)
	if c.Ownership != nil {
		ch.ownership, err = ownership.New(*c.Ownership)
		section("ownership", err)
		decisions("ownership", c.Ownership.Decisions)
	}
	if c.Payment != nil {
		ch.payment, err = paytoken.New(*c.Payment)
		section("payment", err)
		decisions("payment", c.Payment.Decisions)
	}
	if c.Identity != nil {
		ch.identity, err = usercontext.New(*c.Identity)
		section("identity", err)
		decisions("identity", c.Identity.Decisions)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, list := range [][]string{ch.jwt.Owned(), ch.ownershipOwned(), ch.identityOwned()} {
		for _, h := range list {
			if !seen[h] {
				seen[h] = true
				ch.owned = append(ch.owned, h)
			}
		}
	}
	return ch, nil
}

func (c *Decider) ownershipOwned() []string {
	if c.ownership == nil {
		return nil
	}
	return c.ownership.Owned()
}

func (c *Decider) identityOwned() []string {
	if c.identity == nil {
		return nil
	}
	return c.identity.Owned()
}

// NeedsPath reports whether Decide needs the request path (the ownership
// section is present).
func (c *Decider) NeedsPath() bool { return c.ownership != nil }

// Owned lists every upstream header the route owns, over all sections: the
// plugin passes them to SetUpstream so client copies go.
func (c *Decider) Owned() []string { return c.owned }

// Decide runs the present checks in the chain's order on the client's
// headers (Kong's get_headers table: lower-case names; Decide may change
// it) and the normalized path (needed only when NeedsPath), and returns the
// value of each owned upstream header (absent: removed). It records the
// customer and each check's facts in rec, as the plugins of the chain do.
//
// Each later check sees the request the chain's plugin would see: in Kong a
// plugin's kong.service.request.set_headers changes the headers the next
// plugin reads, so each section's upstream headers are applied to headers
// before the next section reads them.
func (c *Decider) Decide(ctx context.Context, headers map[string][]string, path string, rec *kongx.Record) (map[string]string, *denial.Denial) {
	up := make(map[string]string, len(c.owned))
	apply := func(owned []string, values map[string]string) {
		for _, h := range owned {
			v := values[h]
			up[h] = v
			if v == "" {
				delete(headers, strings.ToLower(h))
			} else {
				headers[strings.ToLower(h)] = []string{v}
			}
		}
	}

	jr, den := c.jwt.Decide(headers)
	if den != nil {
		return nil, den
	}
	v := jr.Claims
	rec.CustomerID = v.CustomerID
	rec.Add(slog.Group("jwt", slog.Bool("cached", jr.Cached), slog.String("kid", jr.Kid), slog.String("jti", jr.JTI)))
	apply(c.jwt.Owned(), jr.Upstream)

	if c.ownership != nil {
		or, den := c.ownership.Decide(ctx, path, v)
		if den != nil {
			return nil, den
		}
		rec.Add(slog.Group("ownership", slog.String("country", or.Country), slog.String("subscription_id", strconv.FormatInt(or.SubscriptionID, 10)),
			slog.Bool("cached", or.Cached), slog.Duration("redis", or.Lookup)))
		apply(c.ownership.Owned(), c.ownership.Upstream(or))
	}

	if c.payment != nil {
		token, den := c.payment.TokenFrom(headers)
		if den != nil {
			return nil, den
		}
		pr, den := c.payment.Decide(token, v.CustomerID)
		if den != nil {
			return nil, den
		}
		rec.Add(slog.Group("payment", slog.String("jti", pr.TokenID), slog.String("kid", pr.Kid), slog.Bool("cached", pr.Cached)))
	}

	if c.identity != nil {
		iup, ir, den := c.identity.Decide(ctx, headers, v)
		if den != nil {
			return nil, den
		}
		attrs := []any{slog.Bool("cached", ir.Cached), slog.Int("attempts", ir.Attempts), slog.Duration("identity", ir.Lookup)}
		if ir.Cached {
			attrs = append(attrs, slog.Duration("cache_age", time.Since(ir.StoredAt).Round(time.Millisecond)))
		}
		rec.Add(slog.Group("identity", attrs...))
		apply(c.identity.Owned(), iup)
	}
	return up, nil
}
