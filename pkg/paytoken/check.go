package paytoken

import (
	"crypto/subtle"
	"errors"
	"slices"
	"time"

	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/jwtverify"
)

// Revocations answers whether a customer's token issued at iat is revoked.
type Revocations interface {
	Revoked(customer string, iat time.Time) bool
}

// CheckerOptions configure a route's Checker.
type CheckerOptions struct {
	Verify jwtverify.Options
	// Required entitlements: the token must grant every one.
	Required    []string
	Revocations Revocations
	// Stale reports that the revocation state cannot be trusted now. It
	// may wait, briefly and bounded, while the state is first loaded after
	// a start (payevents.Bound.Stale waits for a fresh follower's first
	// catch-up), so that the first request after a start gets the answer a
	// later one would. Check calls it only for a token that passed every
	// other check, so a bad token never waits.
	Stale      func() bool
	RetryAfter int // seconds, on 503
}

// Checker decides a request from its payment-access-token.
type Checker struct {
	o        CheckerOptions
	verifier *jwtverify.Verifier
}

// NewChecker validates the options.
func NewChecker(o CheckerOptions) (*Checker, error) {
	if o.Revocations == nil || o.Stale == nil {
		return nil, errors.New("paytoken: a revocation source is required")
	}
	for _, e := range o.Required {
		if e == "" {
			return nil, errors.New("paytoken: empty required entitlement")
		}
	}
	// The issuer always sets these; a token without them is not one of ours.
	o.Verify.RequiredClaims = append(slices.Clone(o.Verify.RequiredClaims), "sub", "iat", "jti")
	v, err := jwtverify.New(o.Verify)
	if err != nil {
		return nil, err
	}
	return &Checker{o: o, verifier: v}, nil
}

// Result is an allowed request's facts, for the audit line.
type Result struct {
	TokenID  string
	IssuedAt time.Time
	Cached   bool
}

// Check decides token (from the request) for customer (verified by
// jwt-claims). Order: a token must verify before anything about it is
// said; then whose it is and what it grants; then revocation, which needs
// a trustworthy state.
func (c *Checker) Check(token, customer string) (*Result, *denial.Denial) {
	if token == "" {
		return nil, denial.New(denial.PaymentTokenMissing, "")
	}
	v, err := c.verifier.Verify(token)
	if err != nil {
		switch jwtverify.KindOf(err) {
		case jwtverify.Expired:
			return nil, denial.New(denial.PaymentTokenExpired, "")
		case jwtverify.KeysUnavailable:
			return nil, denial.New(denial.KeysUnavailable, "").WithRetryAfter(c.o.RetryAfter)
		}
		return nil, denial.New(denial.PaymentTokenInvalid, err.Error())
	}
	sub, _ := v.Claims["sub"].(string)
	if subtle.ConstantTimeCompare([]byte(sub), []byte(customer)) != 1 {
		return nil, denial.New(denial.PaymentTokenCustomerMismatch, "")
	}
	granted := entitlements(v.Claims[EntitlementsClaim])
	for _, need := range c.o.Required {
		if !slices.Contains(granted, need) {
			return nil, denial.Newf(denial.EntitlementMissing, "the payment-access-token does not grant %q", need)
		}
	}
	if c.o.Stale() {
		return nil, denial.New(denial.RevocationStateStale, "").WithRetryAfter(c.o.RetryAfter)
	}
	if c.o.Revocations.Revoked(customer, v.IssuedAt) {
		return nil, denial.New(denial.PaymentTokenRevoked, "")
	}
	jti, _ := v.Claims["jti"].(string)
	return &Result{TokenID: jti, IssuedAt: v.IssuedAt, Cached: v.FromCache}, nil
}

func entitlements(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
