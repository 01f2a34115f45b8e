package paytoken

// The decision behind the payment-token plugin: the token from the request,
// the customer from jwt-claims' claims, the revocations from the payment
// event stream (pkg/payevents).

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/subgate/subgate/pkg/check"
	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/jwtverify"
	"github.com/subgate/subgate/pkg/payevents"
	"github.com/subgate/subgate/pkg/redisconn"
	"github.com/subgate/subgate/pkg/upstream"
)

// Revocations answers whether a customer's token issued at iat is revoked.
type Revocations interface {
	Revoked(customer string, iat time.Time) bool
}

// Config is the payment-token plugin's config, declared once (see
// pkg/config). Its leeway and Retry-After shadow the verifier's: payment
// tokens are short-lived and their 503s are brief.
type Config struct {
	TokenHeader             string           `json:"token_header" default:"X-Payment-Token" kong:"len_min=1,match=$header_name" doc:"Header carrying the payment-access-token."`
	RequiredEntitlements    []string         `json:"required_entitlements" doc:"Entitlements the token must grant, every one."`
	Redis                   redisconn.Config `json:"redis" kong:"required" doc:"Where the payment-event stream lives."`
	EventsStream            string           `json:"events_stream" default:"$payment_events_stream" kong:"len_min=1" doc:"The payment-event stream."`
	MaxTokenLifetimeSeconds int              `json:"max_token_lifetime_seconds" default:"$payment_token_ttl_seconds" kong:"between=1|86400" doc:"Longest token lifetime (exp - iat) accepted, and with the leeway how long revocations are kept: a longer-lived token is refused (payment_token_invalid)."`
	StaleAfterSeconds       int              `json:"stale_after_seconds" default:"10" kong:"between=1|3600" doc:"Past this silence from Redis the revocation state is stale: 503."`
	LeewaySeconds           int              `json:"leeway_seconds" default:"5" kong:"between=0|600" doc:"Clock skew allowed for exp, nbf and iat."`
	RetryAfterSeconds       int              `json:"retry_after_seconds" default:"1" kong:"between=0|3600" doc:"Retry-After sent with a 503."`
	// ForwardToken: the token is a credential, and Kong's log serializer
	// logs every request header but Authorization; it reads the headers
	// as the access phase left them, so removing the header keeps it out
	// of the upstream request and of every log entry.
	ForwardToken bool `json:"forward_token" default:"false" doc:"Send the payment-access-token on to the upstream. Off: its header is removed from the request, so neither the upstream nor Kong's log entries (file-log, http-log, ...) see it."`
	jwtverify.Config
	config.Decisions
}

// Decider decides for one route, from the request's payment-access-token.
// Safe for concurrent use.
type Decider struct {
	cfg      Config
	verifier *jwtverify.Verifier
	revs     Revocations
	stale    func() bool
	hidden   []string // the token header, unless forward_token
}

// New builds the decider on the process-wide follower of the stream.
func New(c Config) (*Decider, error) {
	config.FillZero(&c)
	leeway := time.Duration(c.LeewaySeconds) * time.Second
	f, err := payevents.Shared(c.Redis, payevents.FollowerOptions{
		Stream: c.EventsStream,
		Window: time.Duration(c.MaxTokenLifetimeSeconds)*time.Second + leeway,
	})
	if err != nil {
		return nil, err
	}
	stale := payevents.Bound{F: f, After: time.Duration(c.StaleAfterSeconds) * time.Second}
	return NewDecider(c, f.Revocations(), stale.Stale)
}

// NewDecider builds the decider on a revocation source. stale reports that
// the revocation state cannot be trusted now; it may wait, briefly and
// bounded, while the state is first loaded after a start
// (payevents.Bound.Stale waits for a fresh follower's first catch-up), so
// that the first request after a start gets the answer a later one would.
// Decide calls it only for a token that passed every other check.
func NewDecider(c Config, revs Revocations, stale func() bool) (*Decider, error) {
	config.FillZero(&c)
	if revs == nil || stale == nil {
		return nil, errors.New("paytoken: a revocation source is required")
	}
	check := c
	if len(check.Redis.Addresses) == 0 { // revs stands for the Redis settings
		check.Redis = redisconn.Config{Addresses: []string{"given:6379"}}
		config.FillZero(&check.Redis)
	}
	if err := config.Validate(&check); err != nil {
		return nil, err
	}
	vc := c.Config
	vc.LeewaySeconds, vc.RetryAfterSeconds = c.LeewaySeconds, c.RetryAfterSeconds
	vc.Type = jwtverify.PaymentType // a bearer JWT is never a payment token
	// Revocations are kept for the lifetime plus leeway: a token may live
	// no longer, or it would outlive the revocation that covers it.
	vc.MaxLifetime = time.Duration(c.MaxTokenLifetimeSeconds) * time.Second
	// The issuer always sets these; a token without them is not one of ours.
	vc.RequiredClaims = append(slices.Clone(vc.RequiredClaims), "sub", "iat", "jti")
	v, err := jwtverify.New(vc)
	if err != nil {
		return nil, err
	}
	d := &Decider{cfg: c, verifier: v, revs: revs, stale: stale}
	if !c.ForwardToken {
		d.hidden, _ = upstream.Own([]string{c.TokenHeader}) // a valid name: the declaration's pattern
	}
	return d, nil
}

// Check is what Kong's schema cannot say: no empty entitlement (Kong's
// strings refuse one; a Go caller's might not); the verifier's rules.
func (c Config) Check() error {
	var errs []error
	for i, e := range c.RequiredEntitlements {
		if e == "" {
			errs = append(errs, fmt.Errorf("required_entitlements[%d] is empty", i+1))
		}
	}
	return errors.Join(append(errs, c.Config.Check())...)
}

// Reads: the token is in a header; whose it must be, in the claims.
func (d *Decider) Reads() check.Reads { return check.Headers | check.Claims }

// Owned: the token header, removed unless forward_token (in the call that
// sets the route's owned headers: none more on subgate's allow path).
func (d *Decider) Owned() []string { return d.hidden }

// Credentials: the token header, removed on a denial too (pkg/kongx), so
// that no log entry carries the token, another customer's included.
func (d *Decider) Credentials() []string { return d.hidden }

// Decide admits the request only with a valid payment-access-token issued
// to the customer jwt-claims verified.
func (d *Decider) Decide(_ context.Context, req *check.Request, audit *check.Audit) (check.Decision, *denial.Denial) {
	token, den := d.TokenFrom(req.Headers)
	if den != nil {
		return check.Decision{}, den
	}
	res, den := d.verify(token, req.Claims.CustomerID)
	if den != nil {
		return check.Decision{}, den
	}
	audit.Add(slog.String("jti", res.TokenID), slog.String("kid", res.Kid), slog.Bool("cached", res.Cached))
	return check.Decision{}, nil
}

// TokenFrom takes the payment-access-token from the request (Kong's header
// table); a token header sent more than once is refused, since the gateway
// would check one while the upstream might read another.
func (d *Decider) TokenFrom(headers map[string][]string) (string, *denial.Denial) {
	vals := upstream.Values(headers, d.cfg.TokenHeader)
	if len(vals) > 1 {
		return "", denial.Newf(denial.PaymentTokenInvalid, "several %s headers", d.cfg.TokenHeader)
	}
	if len(vals) == 0 {
		return "", nil
	}
	return vals[0], nil
}

// Result is an allowed request's facts, for the audit line.
type Result struct {
	TokenID  string // jti
	Kid      string
	IssuedAt time.Time
	Cached   bool
}

// verify decides token (from the request) for customer (verified by
// jwt-claims). Order: a token must verify before anything about it is
// said; then whose it is and what it grants; then revocation, which needs
// a trustworthy state.
func (d *Decider) verify(token, customer string) (*Result, *denial.Denial) {
	if token == "" {
		return nil, denial.New(denial.PaymentTokenMissing, "")
	}
	v, err := d.verifier.Verify(token)
	if err != nil {
		switch jwtverify.KindOf(err) {
		case jwtverify.Expired:
			return nil, denial.New(denial.PaymentTokenExpired, "")
		case jwtverify.KeysUnavailable:
			return nil, denial.New(denial.KeysUnavailable, "").WithRetryAfter(d.cfg.RetryAfterSeconds).WithCause("payment-token keys: " + err.Error())
		}
		return nil, denial.New(denial.PaymentTokenInvalid, err.Error())
	}
	sub, _ := v.Claims["sub"].(string)
	if subtle.ConstantTimeCompare([]byte(sub), []byte(customer)) != 1 {
		return nil, denial.New(denial.PaymentTokenCustomerMismatch, "")
	}
	granted, ok := entitlements(v.Claims[EntitlementsClaim])
	if !ok {
		return nil, denial.Newf(denial.PaymentTokenInvalid, "claim %q is not an array of strings", EntitlementsClaim)
	}
	for _, need := range d.cfg.RequiredEntitlements {
		if !slices.Contains(granted, need) {
			return nil, denial.Newf(denial.EntitlementMissing, "the payment-access-token does not grant %q", need)
		}
	}
	if d.stale() {
		return nil, denial.New(denial.RevocationStateStale, "").WithRetryAfter(d.cfg.RetryAfterSeconds).
			WithCause(fmt.Sprintf("the revocation follower of stream %s has not heard from Redis within %ds", d.cfg.EventsStream, d.cfg.StaleAfterSeconds))
	}
	if d.revs.Revoked(customer, v.IssuedAt) {
		return nil, denial.New(denial.PaymentTokenRevoked, "")
	}
	jti, _ := v.Claims["jti"].(string)
	return &Result{TokenID: jti, Kid: v.Kid, IssuedAt: v.IssuedAt, Cached: v.Cached}, nil
}

// entitlements reads the claim: absent grants nothing; anything but an
// array of strings is not a token the issuer wrote, so it is refused whole
// rather than read in part.
func entitlements(v any) ([]string, bool) {
	if v == nil {
		return nil, true
	}
	l, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(l))
	for _, e := range l {
		s, ok := e.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}
