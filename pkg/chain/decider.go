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
	"maps"
	"runtime/debug"
	"strings"
	"time"

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
	// IdentityLookup: in the chain the identity service is asked only after
	// the ownership and payment checks allowed; here its round trip can
	// overlap theirs. That is not free: a request they deny has then asked
	// the identity service too (its answer unused, and cached as any).
	IdentityLookup string `json:"identity_lookup" default:"parallel" kong:"one_of=parallel|sequential" doc:"When the identity section asks the identity service: parallel, as soon as the token is verified, while the ownership and payment checks run (one round trip less of latency; a request they then deny has asked the identity service too, its answer unused); sequential, only once they allowed, as the four-plugin chain does. Never for a request whose token did not verify."`
	config.Decisions
}

// The identity_lookup modes.
const (
	IdentityParallel   = "parallel"
	IdentitySequential = "sequential"
)

// Decider decides for one subgate route. Safe for concurrent use.
type Decider struct {
	sections []section // the present ones, in the chain's order
	reads    check.Reads
	owned    []string // every section's owned upstream headers, without duplicates
	creds    []string // the sections' credential headers (the payment token's)
}

// section is one check of the chain, named as its config section (and its
// group of facts in the audit line).
type section struct {
	name string
	check.Decider
	// early: started as soon as the first section (jwt) allowed, in its own
	// goroutine, while the sections before it run (see overlappable).
	early bool
}

// headerReader is a check that names every request header it reads, so
// that the chain can tell whether it may run before the checks ahead of it
// have set their upstream headers.
type headerReader interface{ HeadersRead() []string }

// Check: a section's own log_decisions would be ignored (the top-level one
// governs subgate's one decision): anything but the default is refused
// rather than silently not applied; identity_lookup must be one of its two.
func (c Config) Check() error {
	var def config.Decisions
	config.Defaults(&def)
	config.FillZero(&c)
	var errs []error
	if c.IdentityLookup != IdentityParallel && c.IdentityLookup != IdentitySequential {
		errs = append(errs, fmt.Errorf("identity_lookup %q: must be %s or %s", c.IdentityLookup, IdentityParallel, IdentitySequential))
	}
	for _, s := range []struct {
		name string
		d    *config.Decisions
	}{{"jwt", &c.JWT.Decisions}, {"ownership", decisionsOf(c.Ownership)}, {"payment", decisionsOf(c.Payment)}, {"identity", decisionsOf(c.Identity)}} {
		if s.d != nil && *s.d != def {
			errs = append(errs, fmt.Errorf("%s: log_decisions %q: set log_decisions at the top level of subgate's config; a section's is not used", s.name, s.d.LogDecisions))
		}
	}
	return errors.Join(errs...)
}

// decisionsOf is a present section's log_decisions (nil when absent).
func decisionsOf[S interface{ DecisionLogging() string }](s *S) *config.Decisions {
	if s == nil {
		return nil
	}
	return &config.Decisions{LogDecisions: (*s).DecisionLogging()}
}

// New builds the decider of every present section with that section's
// own constructor, reporting every problem at once, each under its section.
func New(c Config) (*Decider, error) {
	config.FillZero(&c) // a Go caller's zero values are the declared defaults
	if err := c.Check(); err != nil {
		return nil, err
	}
	var errs []error
	ch := &Decider{}
	add := func(name string, d check.Decider, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		ch.sections = append(ch.sections, section{name: name, Decider: d})
	}
	jwt, err := jwtclaims.New(c.JWT)
	add("jwt", jwt, err)
	if c.Ownership != nil {
		d, err := ownership.New(*c.Ownership)
		add("ownership", d, err)
	}
	if c.Payment != nil {
		d, err := paytoken.New(*c.Payment)
		add("payment", d, err)
	}
	if c.Identity != nil {
		d, err := usercontext.New(*c.Identity)
		add("identity", d, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if c.IdentityLookup == IdentityParallel {
		for i := range ch.sections {
			ch.sections[i].early = overlappable(ch.sections, i)
		}
	}
	seen := map[string]bool{}
	for _, s := range ch.sections {
		if c, ok := s.Decider.(interface{ Credentials() []string }); ok {
			ch.creds = append(ch.creds, c.Credentials()...)
		}
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

// overlappable reports whether section i can start as soon as the first
// section (jwt, which establishes the claims every later one reads)
// allowed, in parallel with the sections between: it must do its own I/O
// (only a check that names the headers it reads, the identity check, is
// started early), some section must lie between, and none of those may
// own a header it reads, since in the chain it would read their values.
// It must not read the path: that is a PDK call, and only the request's
// own goroutine talks to Kong.
func overlappable(sections []section, i int) bool {
	hr, ok := sections[i].Decider.(headerReader)
	if i < 2 || !ok || sections[i].Reads()&check.Path != 0 {
		return false
	}
	reads := map[string]bool{}
	for _, h := range hr.HeadersRead() {
		reads[strings.ToLower(h)] = true
	}
	for _, s := range sections[1:i] {
		for _, h := range s.Owned() {
			if reads[strings.ToLower(h)] {
				return false
			}
		}
	}
	return true
}

// Reads is every header, and the path when a section reads it (the
// ownership section).
func (d *Decider) Reads() check.Reads { return d.reads }

// Owned lists every upstream header the route owns, over all sections.
func (d *Decider) Owned() []string { return d.owned }

// Credentials lists the sections' credential headers, which pkg/kongx
// removes on a denial too: whichever section denies, none reaches Kong's
// log entry.
func (d *Decider) Credentials() []string { return d.creds }

// Decide runs the present checks in the chain's order, each on the request
// its plugin would see in the chain: in Kong a plugin's
// kong.service.request.set_headers changes the headers the next plugin
// reads, so each section's upstream headers are applied to req.Headers
// before the next section reads them, and the claims the jwt section
// verified are the later sections' claims. The audit line carries the
// customer the first section names (the jwt section's) and each section's
// facts as a group under its name.
//
// An early section (identity_lookup parallel) starts once the jwt section
// allowed, on a copy of the request as it then stands (it reads no header a
// section before it owns: see overlappable), and is waited for at its place
// in the order, so the first failing check in the chain's order still
// answers. A denial before its place cancels it: no retry starts after that
// (its request in flight is left to finish, see usercontext).
func (d *Decider) Decide(ctx context.Context, req *check.Request, audit *check.Audit) (check.Decision, *denial.Denial) {
	up := make(map[string]string, len(d.owned))
	var auth *check.Authenticate
	var started []*job // by section, once the jwt section allowed
	for i, s := range d.sections {
		var o outcome
		if started != nil && started[i] != nil {
			o = started[i].wait()
		} else {
			o.Decision, o.denial = s.Decide(ctx, req, &o.facts)
		}
		if o.denial != nil {
			return check.Decision{}, o.denial
		}
		if o.Preflight { // the jwt section let a CORS preflight through: so does the chain
			audit.Add(o.facts.Facts...)
			return check.Decision{Preflight: true}, nil
		}
		if o.Claims != nil {
			req.Claims = o.Claims
		}
		if o.Authenticate != nil { // the jwt section's: the adapter tells Kong
			auth = o.Authenticate
		}
		if audit.CustomerID == "" {
			audit.CustomerID = o.facts.CustomerID
		}
		audit.Add(slog.Attr{Key: s.name, Value: slog.GroupValue(o.facts.Facts...)})
		for _, h := range s.Owned() {
			v := o.Upstream[h]
			up[h] = v
			if v == "" {
				delete(req.Headers, strings.ToLower(h))
			} else {
				req.Headers[strings.ToLower(h)] = []string{v}
			}
		}
		if i == 0 {
			for j, e := range d.sections {
				if !e.early {
					continue
				}
				if started == nil {
					var cancel context.CancelFunc
					ctx, cancel = context.WithCancel(ctx)
					defer cancel() // a denial before an early section's place cancels it
					started = make([]*job, len(d.sections))
				}
				started[j] = e.start(ctx, &check.Request{Headers: maps.Clone(req.Headers), Claims: req.Claims})
			}
		}
	}
	return check.Decision{Upstream: up, Authenticate: auth}, nil
}

// outcome is what a section decided.
type outcome struct {
	check.Decision
	denial *denial.Denial
	facts  check.Audit
}

// job is an early section's decision for one request.
type job struct {
	s    section
	ctx  context.Context
	req  *check.Request
	out  outcome
	done chan struct{} // closed once out is set
}

// start runs the section's decision on a worker and returns the job to
// wait on.
func (s section) start(ctx context.Context, req *check.Request) *job {
	j := &job{s: s, ctx: ctx, req: req, done: make(chan struct{})}
	select {
	case workers <- j:
	default:
		go work(j)
	}
	return j
}

// wait returns the job's outcome once it is decided.
func (j *job) wait() outcome {
	<-j.done
	return j.out
}

// workers hands jobs to idle workers: goroutines kept between requests, as
// a new goroutine's stack grows to the depth of the HTTP client on every
// request (runtime.newstack and copystack stood out in profiles of the
// plugin server under load). An idle worker leaves after workerIdle.
var workers = make(chan *job)

const workerIdle = 30 * time.Second

func work(j *job) {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		j.run()
		t.Reset(workerIdle)
		select {
		case j = <-workers:
		case <-t.C:
			return
		}
	}
}

// run decides. A panic here would kill the plugin server (kongx recovers
// only its own goroutine): it is recovered into a 500, as kongx does.
func (j *job) run() {
	defer close(j.done)
	defer func() {
		if p := recover(); p != nil {
			slog.Error("panic in a subgate section; request denied", slog.String("section", j.s.name),
				slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
			j.out = outcome{denial: denial.New(denial.InternalError, "").WithCause(fmt.Sprintf("recovered panic in section %s: %v", j.s.name, p))}
		}
	}()
	j.out.Decision, j.out.denial = j.s.Decide(j.ctx, j.req, &j.out.facts)
}
