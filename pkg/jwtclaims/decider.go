// Package jwtclaims is the decision behind the jwt-claims plugin: find the
// bearer token where the route says it is, verify it, and turn its claims
// into the claims later checks read (pkg/claims) and the headers the
// upstream receives. It knows nothing of Kong (see pkg/check).
package jwtclaims

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/subgate/subgate/pkg/check"
	"github.com/subgate/subgate/pkg/claims"
	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/jwtverify"
	"github.com/subgate/subgate/pkg/upstream"
)

// Config is the jwt-claims plugin's config, declared once (see pkg/config).
type Config struct {
	TokenHeader     string            `json:"token_header" default:"Authorization" kong:"len_min=1,match=$header_name" doc:"Header carrying the bearer token."`
	TokenCookie     string            `json:"token_cookie" doc:"Cookie read for the token when the header is absent."`
	CustomerIDClaim string            `json:"customer_id_claim" default:"sub" kong:"len_min=1" doc:"Claim holding the customer id."`
	CountryClaim    string            `json:"country_claim" default:"country" kong:"len_min=1" doc:"Claim holding the country."`
	UpstreamHeaders map[string]string `json:"upstream_headers" default:"{\"X-Country\":\"country\",\"X-Customer-Id\":\"sub\"}" keys:"match=$header_name" doc:"Upstream header to claim; each is removed from the client's request first."`
	HideCredentials bool              `json:"hide_credentials" default:"false" doc:"Remove the token header from the upstream request."`
	// MaxLifetimeSeconds bounds how long a stolen token serves (Kong's jwt
	// plugin: maximum_expiration; Envoy: max_lifetime). Off by default:
	// nothing in the gateway depends on it (the identity JWT has no
	// revocation whose retention a longer token could outlive).
	MaxLifetimeSeconds int `json:"max_lifetime_seconds" default:"0" kong:"between=0|31536000" doc:"Longest token lifetime (exp - iat) accepted, else 401 token_lifetime_too_long; a token without iat is then refused. 0: no bound."`
	// Consumer mapping: the verified caller told to Kong
	// (kong.client.authenticate), so that Kong's plugins after this one
	// (rate-limiting, acl, the log plugins) know who it is. Off by default.
	CredentialClaim string `json:"credential_claim" doc:"Claim whose value becomes the request's Kong credential id (rate-limiting limit_by credential, the log plugins' authenticated_entity). Empty: none."`
	ConsumerClaim   string `json:"consumer_claim" doc:"Claim whose value is looked up as a Kong consumer (see consumer_by); the request is authenticated as that consumer (rate-limiting limit_by consumer, acl, the log plugins' consumer). Empty: no lookup."`
	ConsumerBy      string `json:"consumer_by" default:"username" kong:"one_of=username|id" doc:"What consumer_claim holds: the consumer's username or its id (a Go plugin cannot look a consumer up by custom_id)."`
	// ConsumerMissing: never an allow as someone else; credential-only
	// still lets credential-keyed plugins count the caller.
	ConsumerMissing      string `json:"consumer_missing" default:"403" kong:"one_of=401|403|credential" doc:"When Kong has no such consumer: 403 or 401 consumer_unknown, or credential (authenticate the credential_claim alone)."`
	ConsumerCacheSeconds int    `json:"consumer_cache_seconds" default:"30" kong:"between=0|3600" doc:"How long a consumer Kong found is reused without asking again (per plugin instance; a consumer removed from Kong still authenticates for this long). 0: ask on every request (one PDK call more)."`
	// RunOnPreflight is Kong's option of the same name on its
	// authentication plugins; a preflight carries no credentials.
	RunOnPreflight bool `json:"run_on_preflight" default:"true" doc:"Check CORS preflights too. false: a preflight (OPTIONS with Origin and Access-Control-Request-Method) passes unchecked, every owned header removed, and subgate's plugins after this one let it pass too."`
	jwtverify.Config
	config.Decisions
}

// Decider decides for one route. Safe for concurrent use.
type Decider struct {
	cfg      Config
	verifier *jwtverify.Verifier
	owned    []string // every upstream header the gateway owns on this route
	missing  *denial.Denial
}

// maxIDLen bounds the customer id taken from a token: it travels in a header.
const maxIDLen = 256

// Check is what Kong's schema cannot say: an upstream header maps to a
// claim, and is not the token header. The verifier's own rules follow.
func (c Config) Check() error {
	var errs []error
	for h, claim := range c.UpstreamHeaders {
		if claim == "" {
			errs = append(errs, fmt.Errorf("upstream_headers: header %q maps to no claim", h))
		}
		if strings.EqualFold(h, c.TokenHeader) {
			errs = append(errs, fmt.Errorf("upstream_headers: %q is the token header", h))
		}
	}
	return errors.Join(append(errs, c.Config.Check())...)
}

// New builds the decider from a config (declared defaults fill what a Go
// caller left zero) and reports every problem at once.
func New(c Config) (*Decider, error) {
	config.FillZero(&c)
	if err := config.Validate(&c); err != nil {
		return nil, err
	}
	var errs []error
	hidden := []string(nil)
	if c.HideCredentials {
		hidden = []string{c.TokenHeader}
	}
	names := hidden
	for h := range c.UpstreamHeaders {
		names = append(names, h)
	}
	errs = append(errs, consumerMapping(c))
	if c.CredentialClaim != "" || c.ConsumerClaim != "" {
		names = append(names, check.ConsumerHeaders...)
	}
	owned, err := upstream.Own(names)
	errs = append(errs, err)
	vc := c.Config
	vc.MaxLifetime = time.Duration(c.MaxLifetimeSeconds) * time.Second
	v, err := jwtverify.New(vc)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	dec := &Decider{cfg: c, verifier: v, owned: owned}
	switch c.ConsumerMissing {
	case "401":
		dec.missing = denial.New(denial.ConsumerUnknown, "").WithStatus(401)
	case "403":
		dec.missing = denial.New(denial.ConsumerUnknown, "")
	}
	return dec, nil
}

// consumerMapping checks the consumer mapping options together.
func consumerMapping(c Config) error {
	var errs []error
	if c.ConsumerMissing == "credential" && c.ConsumerClaim != "" && c.CredentialClaim == "" {
		errs = append(errs, errors.New("consumer_missing: credential needs credential_claim"))
	}
	if c.CredentialClaim != "" || c.ConsumerClaim != "" {
		for h := range c.UpstreamHeaders {
			for _, k := range check.ConsumerHeaders {
				if strings.EqualFold(h, k) {
					errs = append(errs, fmt.Errorf("upstream_headers: %q is Kong's consumer header, set from the consumer mapping", h))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// Reads: the token is in a header or a cookie; whether the request is a
// CORS preflight when the route lets preflights pass.
func (d *Decider) Reads() check.Reads {
	if !d.cfg.RunOnPreflight {
		return check.Headers | check.Preflight
	}
	return check.Headers
}

// Owned lists the upstream headers the gateway sets or removes on this
// route (upstream_headers, and the token header with hide_credentials).
func (d *Decider) Owned() []string { return d.owned }

// Decide verifies the request's one token and hands on its claims, to the
// checks after it and, as upstream_headers maps them, to the upstream.
func (d *Decider) Decide(_ context.Context, req *check.Request, audit *check.Audit) (check.Decision, *denial.Denial) {
	if req.Preflight && !d.cfg.RunOnPreflight {
		audit.Add(slog.Bool("preflight", true))
		return check.Decision{Preflight: true}, nil
	}
	res, den := d.verify(req.Headers)
	if den != nil {
		return check.Decision{}, den
	}
	audit.CustomerID = res.Claims.CustomerID
	audit.Add(slog.Bool("cached", res.Cached), slog.String("kid", res.Kid), slog.String("jti", res.JTI))
	auth, den := d.authenticate(res.Claims)
	if den != nil {
		return check.Decision{}, den
	}
	return check.Decision{Upstream: res.Upstream, Claims: res.Claims, Authenticate: auth}, nil
}

// authenticate says who the caller is to Kong, as the route maps it: the
// credential and consumer claims of the verified token. A claim the route
// names but the token lacks is refused, as the customer id claim is.
func (d *Decider) authenticate(v *claims.Verified) (*check.Authenticate, *denial.Denial) {
	if d.cfg.CredentialClaim == "" && d.cfg.ConsumerClaim == "" {
		return nil, nil
	}
	a := &check.Authenticate{ByID: d.cfg.ConsumerBy == "id", Missing: d.missing, CacheFor: time.Duration(d.cfg.ConsumerCacheSeconds) * time.Second}
	for _, m := range []struct {
		claim string
		to    *string
	}{{d.cfg.CredentialClaim, &a.Credential}, {d.cfg.ConsumerClaim, &a.Consumer}} {
		if m.claim == "" {
			continue
		}
		val, ok := upstream.Scalar(v.Claims[m.claim])
		if !ok || val == "" || len(val) > maxIDLen || !upstream.Safe(val) {
			return nil, denial.Newf(denial.TokenClaimMissing, "the claim %q is missing or not a usable string", m.claim)
		}
		*m.to = val
	}
	return a, nil
}

// Result is what verify established about an allowed request.
type Result struct {
	Claims   *claims.Verified
	Upstream map[string]string // header -> value; owned headers absent here are removed
	Cached   bool
	Kid, JTI string // of the token, for the decision log (never the token)
}

// verify verifies the token found in the token header (or, when that is
// absent, in the token cookie) of the request's headers.
func (d *Decider) verify(headers map[string][]string) (*Result, *denial.Denial) {
	token, den := d.extract(headers)
	if den != nil {
		return nil, den
	}
	v, err := d.verifier.Verify(token)
	if err != nil {
		return nil, deny(err, d.verifier.RetryAfter())
	}
	id, ok := upstream.Scalar(v.Claims[d.cfg.CustomerIDClaim])
	if !ok || id == "" || len(id) > maxIDLen || !upstream.Safe(id) {
		return nil, denial.Newf(denial.TokenClaimMissing, "the customer id claim %q is missing or not a usable string", d.cfg.CustomerIDClaim)
	}
	country, _ := upstream.Scalar(v.Claims[d.cfg.CountryClaim])
	out := &Result{
		Claims:   &claims.Verified{CustomerID: id, Country: country, ExpiresAt: v.ExpiresAt.Unix(), Claims: v.Claims},
		Upstream: make(map[string]string, len(d.cfg.UpstreamHeaders)),
		Cached:   v.Cached,
		Kid:      v.Kid,
	}
	out.JTI, _ = v.Claims["jti"].(string)
	for h, claim := range d.cfg.UpstreamHeaders {
		if val, ok := upstream.Scalar(v.Claims[claim]); ok && upstream.Safe(val) {
			out.Upstream[http.CanonicalHeaderKey(h)] = val
		}
	}
	return out, nil
}

// extract finds the one token of the request (Kong's header table). A
// token header sent more than once, or the token cookie set more than once,
// is refused: the gateway would verify one while the upstream might read
// another. The header wins over the cookie.
func (d *Decider) extract(headers map[string][]string) (string, *denial.Denial) {
	switch vals := upstream.Values(headers, d.cfg.TokenHeader); {
	case len(vals) > 1:
		return "", denial.Newf(denial.TokenMalformed, "several %s headers", d.cfg.TokenHeader)
	case len(vals) == 1 && vals[0] != "":
		tok, ok := bearer(vals[0], strings.EqualFold(d.cfg.TokenHeader, "Authorization"))
		if !ok {
			return "", denial.New(denial.TokenMissing, "no bearer token in "+d.cfg.TokenHeader)
		}
		return tok, nil
	}
	if d.cfg.TokenCookie == "" {
		return "", denial.New(denial.TokenMissing, "")
	}
	token, found := "", 0
	for _, line := range upstream.Values(headers, "Cookie") { // HTTP/2 may send several Cookie fields
		cookies, err := http.ParseCookie(line)
		if err != nil {
			continue
		}
		for _, c := range cookies {
			if c.Name == d.cfg.TokenCookie && c.Value != "" {
				token, found = c.Value, found+1
			}
		}
	}
	switch found {
	case 0:
		return "", denial.New(denial.TokenMissing, "")
	case 1:
		return token, nil
	}
	return "", denial.Newf(denial.TokenMalformed, "the %s cookie is set more than once", d.cfg.TokenCookie)
}

// bearer takes the token out of "Bearer <token>". In the Authorization
// header the scheme is required (another scheme is not a bearer token);
// in a custom header a bare token is accepted too.
func bearer(v string, schemeRequired bool) (string, bool) {
	v = strings.TrimSpace(v)
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		v = strings.TrimLeft(v[7:], " ")
	} else if schemeRequired {
		return "", false
	}
	return v, v != ""
}

var kindCode = map[jwtverify.Kind]denial.Code{
	jwtverify.Malformed:        denial.TokenMalformed,
	jwtverify.TooLarge:         denial.TokenTooLarge,
	jwtverify.InvalidSignature: denial.TokenInvalidSignature,
	jwtverify.UnknownKey:       denial.TokenUnknownKey,
	jwtverify.Expired:          denial.TokenExpired,
	jwtverify.NotYetValid:      denial.TokenNotYetValid,
	jwtverify.IssuerInvalid:    denial.TokenIssuerInvalid,
	jwtverify.AudienceInvalid:  denial.TokenAudienceInvalid,
	jwtverify.ClaimMissing:     denial.TokenClaimMissing,
	jwtverify.KeysUnavailable:  denial.KeysUnavailable,
	jwtverify.LifetimeTooLong:  denial.TokenLifetimeTooLong,
}

func deny(err error, retryAfter int) *denial.Denial {
	var e *jwtverify.Error
	if !errors.As(err, &e) {
		return denial.New(denial.TokenMalformed, "")
	}
	code, ok := kindCode[e.Kind]
	if !ok {
		code = denial.TokenMalformed
	}
	d := denial.New(code, e.Detail)
	if code == denial.KeysUnavailable {
		d.WithRetryAfter(retryAfter).WithCause("JWKS unreachable and no fresh copy of its keys")
	}
	return d
}
