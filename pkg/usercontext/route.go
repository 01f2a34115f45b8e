package usercontext

import (
	"context"
	"net/http"
	"strings"

	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/jwtclaims"
	"github.com/subgate/subgate/pkg/upstream"
)

// Decider is the decision of one route: look the caller up and render the
// upstream headers.
type Decider struct {
	client *Client
	owned  []string
}

// New validates c and builds the route's decider.
func New(c Config) (*Decider, error) {
	cl, err := NewClient(c)
	if err != nil {
		return nil, err
	}
	o := cl.o
	names := []string{o.ContextHeader, o.SourceHeader}
	for _, h := range o.FieldHeaders {
		names = append(names, h)
	}
	owned, err := upstream.Own(names)
	if err != nil {
		return nil, err
	}
	return &Decider{client: cl, owned: owned}, nil
}

// Owned lists the upstream headers the gateway owns on this route.
func (r *Decider) Owned() []string { return r.owned }

// Forwarded lists the client headers the identity service receives.
func (r *Decider) Forwarded() []string { return r.client.o.ForwardHeaders }

// NeedsClaims reports whether Decide wants the verified claims (match_user
// is not off). On the chain, user-context reads them from kong.ctx.shared
// (one PDK call, SharedClaims); subgate has them from its jwt section.
func (r *Decider) NeedsClaims() bool { return r.client.o.MatchUser != MatchOff }

// SharedClaims decides what reading kong.ctx.shared's jwtclaims.SharedKey
// returned (the value and the read's error). Nothing there means the route
// runs no jwt-claims (nil: Decide's match_user then says whether that is
// allowed); a value that is not a current Verified value is refused, as
// every plugin after jwt-claims refuses it (401 claims_missing).
func (r *Decider) SharedClaims(raw any, err error) (*jwtclaims.Verified, *denial.Denial) {
	if err != nil {
		return nil, denial.New(denial.InternalError, "could not read the verified claims").WithCause(err.Error())
	}
	s, isString := raw.(string)
	if raw == nil || isString && s == "" {
		return nil, nil
	}
	v, err := jwtclaims.Decode(s)
	if err != nil {
		return nil, denial.New(denial.ClaimsMissing, "").WithCause("route misconfigured: kong.ctx.shared holds no usable verified claims: " + err.Error())
	}
	return v, nil
}

// expected is the user the identity answer must name for match_user ("":
// no check), from the verified claims (nil: the route verified no token).
func (r *Decider) expected(claims *jwtclaims.Verified) (string, *denial.Denial) {
	o := r.client.o
	switch {
	case o.MatchUser == MatchOff:
		return "", nil
	case claims == nil && o.MatchUser == MatchRequired:
		return "", denial.New(denial.ClaimsMissing, "").WithCause("route misconfigured: match_user is required and no jwt-claims verified a token before user-context")
	case claims == nil:
		return "", nil
	case o.MatchClaim == "":
		return claims.CustomerID, nil
	}
	v, ok := claims.String(o.MatchClaim)
	if !ok || v == "" {
		return "", denial.Newf(denial.TokenClaimMissing, "the token has no string claim %q to match the identity answer against", o.MatchClaim)
	}
	return v, nil
}

// Decide looks the caller up from the client's headers (Kong's table:
// lower-case names) and returns the upstream header values. claims are
// the verified claims (nil: the route verified no token): with match_user,
// an answer naming another user is refused.
func (r *Decider) Decide(ctx context.Context, clientHeaders map[string][]string, claims *jwtclaims.Verified) (map[string]string, *Result, *denial.Denial) {
	want, den := r.expected(claims)
	if den != nil {
		return nil, nil, den
	}
	creds := map[string]string{}
	for _, name := range r.client.o.ForwardHeaders {
		if v := clientHeaders[strings.ToLower(name)]; len(v) > 0 && v[0] != "" {
			creds[name] = v[0]
		}
	}
	out, den := r.client.lookup(WithTrace(ctx, clientHeaders), creds, want)
	if den != nil {
		return nil, nil, den
	}
	if !r.client.fits(out.Raw) { // a copy cached by a route with a larger bound
		return nil, nil, denial.New(denial.IdentityError, "the user context does not fit the upstream header")
	}
	up := map[string]string{http.CanonicalHeaderKey(r.client.o.ContextHeader): string(out.Raw)}
	src := "identity"
	if out.Cached {
		src = "cache"
	}
	up[http.CanonicalHeaderKey(r.client.o.SourceHeader)] = src
	for field, h := range r.client.o.FieldHeaders {
		if v, ok := upstream.Scalar(out.Fields[field]); ok && upstream.Safe(v) {
			up[http.CanonicalHeaderKey(h)] = v
		}
	}
	return up, out, nil
}
