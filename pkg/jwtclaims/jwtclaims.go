// Package jwtclaims is the decision behind the jwt-claims plugin: find the
// bearer token where the route says it is, verify it, and turn its claims
// into the shared value later plugins read and the headers the upstream
// receives. It knows nothing of Kong; the plugin feeds it header values.
package jwtclaims

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/subgate/subgate/pkg/claims"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/hdr"
	"github.com/subgate/subgate/pkg/jwtverify"
)

// Config is the validated configuration of one route.
type Config struct {
	TokenHeader     string            // default Authorization
	TokenCookie     string            // optional second source, read when the header is absent
	CustomerIDClaim string            // default sub
	CountryClaim    string            // default country
	UpstreamHeaders map[string]string // header -> claim; nil: X-Customer-Id and X-Country
	HideCredentials bool              // remove the token header from the upstream request
	Verify          jwtverify.Options
}

// Decider decides for one route. Safe for concurrent use.
type Decider struct {
	cfg      Config
	verifier *jwtverify.Verifier
	owned    []string // every upstream header the gateway owns on this route
}

// maxIDLen bounds the customer id taken from a token: it travels in a header.
const maxIDLen = 256

// New validates c and builds the verifier.
func New(c Config) (*Decider, error) {
	if c.TokenHeader == "" {
		c.TokenHeader = "Authorization"
	}
	if c.CustomerIDClaim == "" {
		c.CustomerIDClaim = "sub"
	}
	if c.CountryClaim == "" {
		c.CountryClaim = "country"
	}
	if c.UpstreamHeaders == nil {
		c.UpstreamHeaders = map[string]string{"X-Customer-Id": c.CustomerIDClaim, "X-Country": c.CountryClaim}
	}
	for h, claim := range c.UpstreamHeaders {
		if !hdr.ValidName(h) {
			return nil, fmt.Errorf("upstream_headers: %q is not a valid header name", h)
		}
		if claim == "" {
			return nil, fmt.Errorf("upstream_headers: header %q maps to no claim", h)
		}
		if strings.EqualFold(h, c.TokenHeader) {
			return nil, fmt.Errorf("upstream_headers: %q is the token header", h)
		}
	}
	if !hdr.ValidName(c.TokenHeader) {
		return nil, fmt.Errorf("token_header: %q is not a valid header name", c.TokenHeader)
	}
	v, err := jwtverify.New(c.Verify)
	if err != nil {
		return nil, err
	}
	d := &Decider{cfg: c, verifier: v}
	for h := range c.UpstreamHeaders {
		d.owned = append(d.owned, http.CanonicalHeaderKey(h))
	}
	if c.HideCredentials {
		d.owned = append(d.owned, http.CanonicalHeaderKey(c.TokenHeader))
	}
	slices.Sort(d.owned)
	return d, nil
}

// TokenHeader is the header to read.
func (d *Decider) TokenHeader() string { return d.cfg.TokenHeader }

// UsesCookie reports whether the Cookie header is a token source too.
func (d *Decider) UsesCookie() bool { return d.cfg.TokenCookie != "" }

// Owned lists the upstream headers the gateway sets or removes on this
// route; the plugin passes them to kongx.SetUpstream so client copies go.
func (d *Decider) Owned() []string { return d.owned }

// Decision is the outcome of an allowed request.
type Decision struct {
	Claims    *claims.Verified
	Upstream  map[string]string // header -> value; owned headers absent here are removed
	FromCache bool
}

// Decide verifies the token found in the header value (or, when that is
// empty, in the cookie named by the config within cookieHeader).
func (d *Decider) Decide(headerValue, cookieHeader string) (*Decision, *denial.Denial) {
	token, den := d.extract(headerValue, cookieHeader)
	if den != nil {
		return nil, den
	}
	v, err := d.verifier.Verify(token)
	if err != nil {
		return nil, deny(err)
	}
	id, ok := hdr.Scalar(v.Claims[d.cfg.CustomerIDClaim])
	if !ok || id == "" || len(id) > maxIDLen || !hdr.Safe(id) {
		return nil, denial.Newf(denial.TokenClaimMissing, "the customer id claim %q is missing or not a usable string", d.cfg.CustomerIDClaim)
	}
	country, _ := hdr.Scalar(v.Claims[d.cfg.CountryClaim])
	out := &Decision{
		Claims:    &claims.Verified{CustomerID: id, Country: country, ExpiresAt: v.ExpiresAt.Unix(), Claims: v.Claims},
		Upstream:  make(map[string]string, len(d.cfg.UpstreamHeaders)),
		FromCache: v.FromCache,
	}
	for h, claim := range d.cfg.UpstreamHeaders {
		if val, ok := hdr.Scalar(v.Claims[claim]); ok && hdr.Safe(val) {
			out.Upstream[http.CanonicalHeaderKey(h)] = val
		}
	}
	return out, nil
}

func (d *Decider) extract(headerValue, cookieHeader string) (string, *denial.Denial) {
	if headerValue != "" {
		tok, ok := bearer(headerValue, strings.EqualFold(d.cfg.TokenHeader, "Authorization"))
		if !ok {
			return "", denial.New(denial.TokenMissing, "no bearer token in "+d.cfg.TokenHeader)
		}
		return tok, nil
	}
	if d.cfg.TokenCookie != "" && cookieHeader != "" {
		cookies, err := http.ParseCookie(cookieHeader)
		if err == nil {
			for _, c := range cookies {
				if c.Name == d.cfg.TokenCookie && c.Value != "" {
					return c.Value, nil
				}
			}
		}
	}
	return "", denial.New(denial.TokenMissing, "")
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
}

func deny(err error) *denial.Denial {
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
		d.WithRetryAfter(30)
	}
	return d
}
