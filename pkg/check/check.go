// Package check is the contract every subgate check implements, and the
// one seam between the decisions and Kong: a Decider says what it reads
// from the request (Reads), which upstream headers it owns (Owned), and
// decides (Decide), recording its facts for the audit line. The Kong
// adapter (pkg/kongx) runs any Decider as a plugin; pkg/chain runs several
// as one. Neither side imports the other.
package check

import (
	"context"
	"log/slog"
	"time"

	"github.com/subgate/subgate/pkg/claims"
	"github.com/subgate/subgate/pkg/denial"
)

// Reads is what a check reads from the request; the adapter reads nothing
// else, each part in one PDK call.
type Reads uint8

const (
	// Headers is every request header (Kong's get_headers table).
	Headers Reads = 1 << iota
	// Path is the normalized path (kong.request.get_path).
	Path
	// Claims is what jwt-claims verified (kong.ctx.shared); a request
	// without them is denied before the check decides.
	Claims
	// OptionalClaims is Claims for a check that also runs on routes
	// without jwt-claims: Request.Claims is nil when there are none (a
	// value there that is not a verified one is still denied).
	OptionalClaims
	// Preflight is whether the request is a CORS preflight
	// (Request.Preflight: OPTIONS with Origin and
	// Access-Control-Request-Method). It implies Headers; the adapter asks
	// Kong for the method only when the headers carry both (one PDK call).
	Preflight
)

// Request is what the adapter read, as Reads asked.
type Request struct {
	// Headers has lower-case names, values in order. A check may read it
	// only; pkg/chain changes it between checks as Kong would.
	Headers map[string][]string
	// Path is the normalized path; a check reads it with ReadPath. The
	// adapter may leave it to LoadPath (one PDK call, made on first use),
	// so that the path's round trip to Kong overlaps the lookups started
	// before a check needs it (pkg/chain: the identity GET).
	Path     string
	LoadPath func() (string, *denial.Denial)
	Claims   *claims.Verified
	// Preflight: a CORS preflight, when Reads asks.
	Preflight bool
}

// ReadPath returns the path, loading it on first use; a path that cannot
// be read is a denial (not UTF-8: request_bytes_invalid).
func (r *Request) ReadPath() (string, *denial.Denial) {
	if r.LoadPath != nil {
		p, den := r.LoadPath()
		if den != nil {
			return "", den
		}
		r.Path, r.LoadPath = p, nil
	}
	return r.Path, nil
}

// Decision is an allowed request's outcome.
type Decision struct {
	// Upstream holds the value of each owned header; an owned header absent
	// here is removed from the request, so no client copy reaches the
	// upstream.
	Upstream map[string]string
	// Claims are the caller's verified claims, set by the check that
	// verifies the caller (jwt-claims) for the checks after it.
	Claims *claims.Verified
	// Authenticate, when set, is who the adapter tells Kong the caller is,
	// for Kong's plugins after this one (rate-limiting, acl, log plugins).
	Authenticate *Authenticate
	// Preflight lets a CORS preflight through unchecked (the route opted
	// out of checking them): no claims, every owned header removed, and the
	// checks after this one in Kong's chain let it through too.
	Preflight bool
}

// Authenticate is the verified caller as Kong's consumer and credential
// (kong.client.authenticate).
type Authenticate struct {
	// Credential is the credential id Kong sees (its credential.id); "" none.
	Credential string
	// Consumer is looked up as a Kong consumer: by username, or by its id
	// with ByID; "" none.
	Consumer string
	ByID     bool
	// Missing is the answer when Kong has no such consumer; nil
	// authenticates the credential alone.
	Missing *denial.Denial
	// CacheFor is how long a consumer Kong found is used again without
	// asking (0: ask every time).
	CacheFor time.Duration
}

// ConsumerHeaders are the upstream headers Kong's own authentication
// plugins set for the consumer they authenticated (kong/constants.lua
// HEADERS): a check that authenticates owns them, so a client's copy never
// passes; the adapter sets them from what Kong holds (X-Anonymous-Consumer
// is always removed: no caller is authenticated as anonymous).
var ConsumerHeaders = []string{"X-Consumer-Id", "X-Consumer-Custom-Id", "X-Consumer-Username", "X-Credential-Identifier", "X-Anonymous-Consumer"}

// Audit is what a decision tells the audit line: the customer, and facts
// such as "cached" (never a token or a secret). A check records them on
// an allow; a denial's code and cause are the adapter's.
type Audit struct {
	CustomerID string
	Facts      []slog.Attr
}

// Add appends facts.
func (a *Audit) Add(facts ...slog.Attr) { a.Facts = append(a.Facts, facts...) }

// Decider decides for one route. Safe for concurrent use.
type Decider interface {
	Reads() Reads
	// Owned lists the upstream headers the route owns: each is set to its
	// Decision.Upstream value or removed.
	Owned() []string
	// Decide allows the request (nil denial) or denies it.
	Decide(ctx context.Context, req *Request, audit *Audit) (Decision, *denial.Denial)
}
