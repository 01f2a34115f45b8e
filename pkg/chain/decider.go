// Package chain is the subgate plugin's decision: the four checks of the
// plugin chain (jwt-claims, subscription-owner, payment-token,
// user-context) in one access event, in the chain's order, each its own
// package's check.Decider. A route moves from the chain to subgate by
// nesting each plugin's config under its section; only how the request is
// read from and written to Kong differs: one read of every header, the path
// when a section reads it, one write of every owned upstream header, and
// the claims stay in Go (no kong.ctx.shared). Only the subgate plugin
// imports it, so the other plugins' binaries do not carry all four checks.
package chain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/subgate/subgate/pkg/check"
	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/jwtclaims"
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
	sections []section // the present ones, in the chain's order
	reads    check.Reads
	owned    []string // every section's owned upstream headers, without duplicates
}

// section is one check of the chain, named as its config section (and its
// group of facts in the audit line).
type section struct {
	name string
	check.Decider
}

// New builds the decider of every present section with that section's
// own constructor, reporting every problem at once, each under its section.
func New(c Config) (*Decider, error) {
	// A section's own log_decisions would be ignored (the top-level one
	// governs subgate's one decision): anything but the default is refused
	// rather than silently not applied.
	var def config.Decisions
	config.Defaults(&def)
	var errs []error
	ch := &Decider{}
	add := func(name string, d check.Decider, err error, decisions config.Decisions) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		if decisions != def {
			errs = append(errs, fmt.Errorf("%s: log_decisions %q: set log_decisions at the top level of subgate's config; a section's is not used", name, decisions.LogDecisions))
		}
		ch.sections = append(ch.sections, section{name, d})
	}
	jwt, err := jwtclaims.New(c.JWT)
	add("jwt", jwt, err, c.JWT.Decisions)
	if c.Ownership != nil {
		d, err := ownership.New(*c.Ownership)
		add("ownership", d, err, c.Ownership.Decisions)
	}
	if c.Payment != nil {
		d, err := paytoken.New(*c.Payment)
		add("payment", d, err, c.Payment.Decisions)
	}
	if c.Identity != nil {
		d, err := usercontext.New(*c.Identity)
		add("identity", d, err, c.Identity.Decisions)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, s := range ch.sections {
		ch.reads |= s.Reads()
		for _, h := range s.Owned() {
			if !seen[h] {
				seen[h] = true
				ch.owned = append(ch.owned, h)
			}
		}
	}
	// The jwt section, always first, establishes the claims the later ones
	// read: the chain reads none from Kong.
	ch.reads &^= check.Claims | check.OptionalClaims
	return ch, nil
}

// Reads is every header, and the path when a section reads it (the
// ownership section).
func (d *Decider) Reads() check.Reads { return d.reads }

// Owned lists every upstream header the route owns, over all sections.
func (d *Decider) Owned() []string { return d.owned }

// Decide runs the present checks in the chain's order, each on the request
// its plugin would see in the chain: in Kong a plugin's
// kong.service.request.set_headers changes the headers the next plugin
// reads, so each section's upstream headers are applied to req.Headers
// before the next section reads them, and the claims the jwt section
// verified are the later sections' claims. The audit line carries the
// customer the first section names (the jwt section's) and each section's
// facts as a group under its name.
func (d *Decider) Decide(ctx context.Context, req *check.Request, audit *check.Audit) (check.Decision, *denial.Denial) {
	up := make(map[string]string, len(d.owned))
	var auth *check.Authenticate
	for _, s := range d.sections {
		var facts check.Audit
		out, den := s.Decide(ctx, req, &facts)
		if den != nil {
			return check.Decision{}, den
		}
		if out.Preflight { // the jwt section let a CORS preflight through: so does the chain
			audit.Add(facts.Facts...)
			return check.Decision{Preflight: true}, nil
		}
		if out.Claims != nil {
			req.Claims = out.Claims
		}
		if out.Authenticate != nil { // the jwt section's: the adapter tells Kong
			auth = out.Authenticate
		}
		if audit.CustomerID == "" {
			audit.CustomerID = facts.CustomerID
		}
		audit.Add(slog.Attr{Key: s.name, Value: slog.GroupValue(facts.Facts...)})
		for _, h := range s.Owned() {
			v := out.Upstream[h]
			up[h] = v
			if v == "" {
				delete(req.Headers, strings.ToLower(h))
			} else {
				req.Headers[strings.ToLower(h)] = []string{v}
			}
		}
	}
	return check.Decision{Upstream: up, Authenticate: auth}, nil
}
