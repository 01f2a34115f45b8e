package usercontext

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/hdr"
)

// RouteOptions say what a route sends upstream.
type RouteOptions struct {
	ContextHeader  string            // the whole context as JSON (default X-User-Context)
	MaxHeaderBytes int               // bound on that header (default 4096)
	SourceHeader   string            // "identity" or "cache" (default X-User-Context-Source)
	FieldHeaders   map[string]string // context field -> header (default user_id -> X-User-Id)
}

// Route is the decision of one route: look the caller up and render the
// upstream headers.
type Route struct {
	client *Client
	o      RouteOptions
	owned  []string
}

// NewRoute validates ro.
func NewRoute(c *Client, ro RouteOptions) (*Route, error) {
	if ro.ContextHeader == "" {
		ro.ContextHeader = "X-User-Context"
	}
	if ro.SourceHeader == "" {
		ro.SourceHeader = "X-User-Context-Source"
	}
	if ro.MaxHeaderBytes <= 0 {
		ro.MaxHeaderBytes = 4096
	}
	if ro.FieldHeaders == nil {
		ro.FieldHeaders = map[string]string{c.o.UserIDField: "X-User-Id"}
	}
	r := &Route{client: c, o: ro}
	for _, h := range append([]string{ro.ContextHeader, ro.SourceHeader}, values(ro.FieldHeaders)...) {
		if !hdr.ValidName(h) {
			return nil, fmt.Errorf("invalid upstream header name %q", h)
		}
		r.owned = append(r.owned, http.CanonicalHeaderKey(h))
	}
	slices.Sort(r.owned)
	r.owned = slices.Compact(r.owned)
	return r, nil
}

func values(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// Owned lists the upstream headers the gateway owns on this route.
func (r *Route) Owned() []string { return r.owned }

// Forwarded lists the client headers the identity service receives.
func (r *Route) Forwarded() []string { return r.client.o.ForwardHeaders }

// Decide looks the caller up from the client's headers (Kong's table:
// lower-case names) and returns the upstream header values.
func (r *Route) Decide(ctx context.Context, clientHeaders map[string][]string) (map[string]string, *Outcome, *denial.Denial) {
	creds := map[string]string{}
	for _, name := range r.client.o.ForwardHeaders {
		if v := clientHeaders[strings.ToLower(name)]; len(v) > 0 && v[0] != "" {
			creds[name] = v[0]
		}
	}
	out, den := r.client.Lookup(ctx, creds)
	if den != nil {
		return nil, nil, den
	}
	if len(out.Raw) > r.o.MaxHeaderBytes || !hdr.Safe(string(out.Raw)) {
		return nil, nil, denial.New(denial.IdentityError, "the user context does not fit the upstream header")
	}
	up := map[string]string{http.CanonicalHeaderKey(r.o.ContextHeader): string(out.Raw)}
	src := "identity"
	if out.FromCache {
		src = "cache"
	}
	up[http.CanonicalHeaderKey(r.o.SourceHeader)] = src
	for field, h := range r.o.FieldHeaders {
		if v, ok := hdr.Scalar(out.Fields[field]); ok && hdr.Safe(v) {
			up[http.CanonicalHeaderKey(h)] = v
		}
	}
	return up, out, nil
}
