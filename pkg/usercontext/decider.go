package usercontext

// The decision behind the user-context plugin: the identity lookup
// (usercontext.go) turned into the upstream headers.

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/subgate/subgate/pkg/check"
	"github.com/subgate/subgate/pkg/claims"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/upstream"
)

// Decider decides for one route: it looks the caller up and renders the
// upstream headers. Safe for concurrent use.
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

// Reads: the caller's credentials (and trace context) are headers; with
// match_user, the token jwt-claims verified, when it ran (on the chain
// from kong.ctx.shared, one PDK call; subgate has them from its jwt
// section).
func (d *Decider) Reads() check.Reads {
	if d.client.o.MatchUser == MatchOff {
		return check.Headers
	}
	return check.Headers | check.OptionalClaims
}

// Owned lists the upstream headers the gateway owns on this route.
func (d *Decider) Owned() []string { return d.owned }

// Forwarded lists the client headers the identity service receives.
func (d *Decider) Forwarded() []string { return d.client.o.ForwardHeaders }

// Decide asks the identity service (or, on its 503, the cache) who the
// caller is and forwards the user context upstream.
func (d *Decider) Decide(ctx context.Context, req *check.Request, audit *check.Audit) (check.Decision, *denial.Denial) {
	up, res, den := d.lookup(ctx, req.Headers, req.Claims)
	if den != nil {
		return check.Decision{}, den
	}
	audit.CustomerID = res.UserID
	audit.Add(slog.Bool("cached", res.Cached), slog.Int("attempts", res.Attempts), slog.Duration("identity", res.Lookup))
	if res.Cached {
		audit.Add(slog.Duration("cache_age", time.Since(res.StoredAt).Round(time.Millisecond)))
	}
	if res.Shared {
		audit.Add(slog.String("cache_level", "shared")) // another node's lookup, from Redis
	}
	return check.Decision{Upstream: up}, nil
}

// expected is the user the identity answer must name for match_user ("":
// no check), from the verified claims (nil: the route verified no token).
func (d *Decider) expected(v *claims.Verified) (string, *denial.Denial) {
	o := d.client.o
	switch {
	case o.MatchUser == MatchOff:
		return "", nil
	case v == nil && o.MatchUser == MatchRequired:
		return "", denial.New(denial.ClaimsMissing, "").WithCause("route misconfigured: match_user is required and no jwt-claims verified a token before user-context")
	case v == nil:
		return "", nil
	case o.MatchClaim == "":
		return v.CustomerID, nil
	}
	s, ok := v.String(o.MatchClaim)
	if !ok || s == "" {
		return "", denial.Newf(denial.TokenClaimMissing, "the token has no string claim %q to match the identity answer against", o.MatchClaim)
	}
	return s, nil
}

// lookup looks the caller up from the client's headers (Kong's table:
// lower-case names) and returns the upstream header values. v are the
// verified claims (nil: the route verified no token): with match_user, an
// answer naming another user is refused.
func (d *Decider) lookup(ctx context.Context, clientHeaders map[string][]string, v *claims.Verified) (map[string]string, *Result, *denial.Denial) {
	want, den := d.expected(v)
	if den != nil {
		return nil, nil, den
	}
	creds := map[string]string{}
	for _, name := range d.client.o.ForwardHeaders {
		if v := clientHeaders[strings.ToLower(name)]; len(v) > 0 && v[0] != "" {
			creds[name] = v[0]
		}
	}
	out, den := d.client.lookup(WithTrace(ctx, clientHeaders), creds, want)
	if den != nil {
		return nil, nil, den
	}
	if !d.client.fits(out.Raw) { // a copy cached by a route with a larger bound
		return nil, nil, denial.New(denial.IdentityError, "the user context does not fit the upstream header")
	}
	up := map[string]string{http.CanonicalHeaderKey(d.client.o.ContextHeader): string(out.Raw)}
	src := "identity"
	if out.Cached {
		src = "cache"
	}
	up[http.CanonicalHeaderKey(d.client.o.SourceHeader)] = src
	for field, h := range d.client.o.FieldHeaders {
		if v, ok := upstream.Scalar(out.Field(field)); ok && upstream.Safe(v) {
			up[http.CanonicalHeaderKey(h)] = v
		}
	}
	return up, out, nil
}

// HeadersRead lists every client header the check reads: the forwarded
// credentials and the trace context (pkg/chain may then start it early).
func (d *Decider) HeadersRead() []string {
	return append(append([]string(nil), d.client.o.ForwardHeaders...), traceHeaders...)
}
