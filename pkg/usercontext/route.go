package usercontext

import (
	"context"
	"net/http"
	"strings"

	"github.com/subgate/subgate/pkg/denial"
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

// Decide looks the caller up from the client's headers (Kong's table:
// lower-case names) and returns the upstream header values.
func (r *Decider) Decide(ctx context.Context, clientHeaders map[string][]string) (map[string]string, *Result, *denial.Denial) {
	creds := map[string]string{}
	for _, name := range r.client.o.ForwardHeaders {
		if v := clientHeaders[strings.ToLower(name)]; len(v) > 0 && v[0] != "" {
			creds[name] = v[0]
		}
	}
	out, den := r.client.Lookup(WithTrace(ctx, clientHeaders), creds)
	if den != nil {
		return nil, nil, den
	}
	if len(out.Raw) > r.client.o.MaxContextHeaderBytes || !upstream.Safe(string(out.Raw)) {
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
