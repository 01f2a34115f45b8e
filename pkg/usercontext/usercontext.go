// Package usercontext asks the identity service who the caller is, with the
// fallback cache of the seed fallback-caching-user-context: every success is
// cached locally, and the cached copy is used only when the identity service
// answers 503. The rule, per answer:
//
//	2xx                 fresh context; replaces the cached copy; the cache is never read
//	408                 retry (bounded, backoff with jitter); giving up is 504 identity_timeout; never the cache
//	503 + cached copy   stop retrying and serve the copy if younger than MaxStale (with identity
//	                    events: and no event for its user since its lookup began, and the events
//	                    not stale; see events.go)
//	503, nothing usable retry; giving up is 503 identity_unavailable
//	401 / 403           passed on, and the caller's cached copy is evicted
//	other 4xx           passed on with its status
//	other 5xx           502 identity_error; never the cache
//	connection failure  as 408, or as 503 when ConnErrorsAs503 is set
//
// The cache has two levels: the plugin server's own (local) and, with
// shared_cache, a shared level in Redis read on a 503 when the local one
// has no usable copy, under the same rules (see shared.go).
//
// A 2xx is a context only when it is one JSON object, valid UTF-8, without
// a member name twice at any depth (readers disagree on which copy wins),
// with a string user id, fitting the upstream header, and (match_user)
// naming the user jwt-claims verified. Anything else is refused and never
// cached.
package usercontext

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/processwide"
	"github.com/subgate/subgate/pkg/strictjson"
	"github.com/subgate/subgate/pkg/tlsconf"
	"github.com/subgate/subgate/pkg/upstream"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/metrics"
)

// Config is the user-context plugin's config, declared once (see
// pkg/config).
type Config struct {
	IdentityURL      string   `json:"identity_url" kong:"required,match=$http_url" doc:"The identity service's context endpoint (http or https)."`
	Method           string   `json:"method" default:"GET" kong:"one_of=GET|POST" doc:"Method of the identity request."`
	ForwardHeaders   []string `json:"forward_headers" default:"[\"Authorization\",\"Cookie\"]" elements:"match=$header_name" doc:"Client headers sent to the identity service (the credentials; the cache key hashes them)."`
	AttemptTimeoutMs int      `json:"attempt_timeout_ms" default:"1000" kong:"between=1|60000" doc:"Timeout of one attempt."`
	MaxAttempts      int      `json:"max_attempts" default:"3" kong:"between=1|10" doc:"Attempts on 408, 503 and connection failures."`
	BackoffMs        int      `json:"backoff_ms" default:"50" kong:"between=1|10000" doc:"First retry delay, doubled each time, with full jitter."`
	DeadlineMs       int      `json:"deadline_ms" default:"2000" kong:"between=1|60000" doc:"The whole lookup, retries included."`
	MaxStaleSeconds  int      `json:"max_stale_seconds" default:"300" kong:"between=1|86400" doc:"Oldest cached context served when the identity service answers 503."`
	CacheSize        int      `json:"cache_size" default:"10000" kong:"between=1|10000000" doc:"Cached contexts per identity URL."`
	MaxBodyBytes     int      `json:"max_body_bytes" default:"65536" kong:"between=1|10485760" doc:"Largest identity response accepted."`
	UserIDField      string   `json:"user_id_field" default:"user_id" kong:"len_min=1" doc:"Field of the context that must hold the user id."`
	MaxConcurrent    int      `json:"max_concurrent" default:"256" kong:"between=1|100000" doc:"Identity lookups in flight per identity URL."`
	// ConnectionErrorsAs503 treats a refused connection or our own timeout
	// like a 503 (may serve the cache). Off by default: an unreachable
	// service is not proof that every other request fails too, which is
	// what makes the cache safe on 503.
	ConnectionErrorsAs503 bool              `json:"connection_errors_as_503" default:"false" doc:"Treat connection failures and timeouts as 503 (may serve the cache)."`
	RetryAfterSeconds     int               `json:"retry_after_seconds" default:"1" kong:"between=0|3600" doc:"Retry-After sent with 503 identity_unavailable."`
	ContextHeader         string            `json:"context_header" default:"X-User-Context" kong:"len_min=1,match=$header_name" doc:"Upstream header with the whole context as JSON."`
	MaxContextHeaderBytes int               `json:"max_context_header_bytes" default:"4096" kong:"between=1|65536" doc:"Bound on that header."`
	SourceHeader          string            `json:"source_header" default:"X-User-Context-Source" kong:"len_min=1,match=$header_name" doc:"Upstream header saying identity or cache."`
	FieldHeaders          map[string]string `json:"field_headers" default:"{\"user_id\":\"X-User-Id\"}" values:"match=$header_name" doc:"Context field to upstream header."`
	// MatchUser: the identity service authenticates the forwarded
	// credentials (a cookie, say) on its own, and could name another user
	// than the token jwt-claims verified; the upstream would then get two
	// identities. On by default wherever a token was verified.
	MatchUser   string             `json:"match_user" default:"verified" kong:"one_of=verified|required|off" doc:"The answer's user id must be the caller jwt-claims verified, else 403 identity_user_mismatch: verified checks when the route verified a token, required also refuses a request without one (401 claims_missing), off never checks."`
	MatchClaim  string             `json:"match_claim" doc:"Verified claim the answer's user id must equal; empty: the customer id jwt-claims verified (its customer_id_claim)."`
	Events      *EventsConfig      `json:"events" doc:"The identity events: a user's deletion, block or role change evicts their cached contexts; while the events are stale the cache is not served."`
	SharedCache *SharedCacheConfig `json:"shared_cache" doc:"A shared level of the fallback cache in Redis, for many Kong nodes: every success is written there too, and a 503 with no usable local copy reads it, so a user seen by any node is covered. Same rules: max_stale_seconds, identity events, credentials never stored."`
	// TLS to an https identity_url: the CA bundle and client certificate.
	tlsconf.Files

	Now func() time.Time `json:"-"` // tests
	config.Decisions
}

// Check is what Kong's schema cannot say: the identity URL parses (Kong's
// pattern sees only its scheme and host), no forwarded header is empty.
func (c Config) Check() error {
	var errs []error
	if u, err := url.Parse(c.IdentityURL); err != nil || u.Host == "" {
		errs = append(errs, fmt.Errorf("identity_url %q is not a URL with a host", c.IdentityURL))
	}
	for i, h := range c.ForwardHeaders {
		if h == "" {
			errs = append(errs, fmt.Errorf("forward_headers[%d] is empty", i+1))
		}
	}
	return errors.Join(errs...)
}

// The match_user modes.
const (
	MatchVerified = "verified"
	MatchRequired = "required"
	MatchOff      = "off"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// Context is a validated user context.
type Context struct {
	Raw      []byte // the identity service's JSON, compacted
	UserID   string
	StoredAt time.Time // when it was fetched
	// Asked is when the lookup that fetched it began (this process's
	// clock): an identity event applied since may postdate the answer.
	Asked time.Time

	sharedAt time.Time // when this node last wrote it to the shared level (zero: never)
}

// Field is the top-level member name of the context, decoded (nil: none).
// A route reads few members, so none is decoded before it is read.
func (e *Context) Field(name string) any {
	raw, ok := strictjson.Member(e.Raw, name)
	if !ok {
		return nil
	}
	if len(raw) > 1 && raw[0] == '"' && bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]) // ids and codes: nothing to decode
	}
	var v any
	_ = json.Unmarshal(raw, &v) // parse validated the whole text
	return v
}

// Result is an allowed lookup.
type Result struct {
	*Context
	Cached   bool
	Shared   bool // served from the shared level (Cached too)
	Attempts int
	Lookup   time.Duration // the whole lookup, retries included
}

type entry = *Context

// EntityChecks: a client certificate comes with its key.
func (Config) EntityChecks() []config.Check {
	return []config.Check{config.MutuallyRequired("tls_cert_file", "tls_key_file")}
}

// service is what routes with the same identity URL share: the cache and
// the concurrency bound.
type service struct {
	cache *lru.Cache[[32]byte, entry]
	slots chan struct{}
	label string // the identity URL as a metric label (metrics.URLLabel)

	mu     sync.Mutex
	byUser map[string]map[[32]byte]struct{} // cache keys per user id: what an identity event evicts
}

var services processwide.Map[string, *service]

func shared(o Config) (*service, error) {
	return services.Get(o.IdentityURL, func() (*service, error) { return newService(o) })
}

func newService(o Config) (*service, error) {
	s := &service{slots: make(chan struct{}, o.MaxConcurrent), label: metrics.URLLabel(o.IdentityURL), byUser: map[string]map[[32]byte]struct{}{}}
	var err error
	s.cache, err = lru.NewWithEvict(o.CacheSize, s.evicted)
	return s, err
}

// httpClients are the identity clients, per identity URL and TLS files'
// contents: a rotated certificate makes a new client (and pool) for the
// instances started since, while the URL's cache lives on.
var httpClients processwide.Map[string, *http.Client]

// httpClient is the one place the identity service's HTTP client and
// transport are made: its TLS (tls_* files, https only), its pool, no
// proxy, no redirects followed.
func httpClient(o Config) (*http.Client, error) {
	https := strings.HasPrefix(o.IdentityURL, "https://")
	if o.Files.Set() && !https {
		return nil, fmt.Errorf("tls_ca_file, tls_cert_file and tls_key_file need an https identity_url, not %q", o.IdentityURL)
	}
	l, err := o.Files.Load("", "")
	if err != nil {
		return nil, err
	}
	return httpClients.Get(o.IdentityURL+"|"+l.Digest, func() (*http.Client, error) {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		tr.Proxy = nil // the identity service is internal; never route it through an environment proxy
		if l.Config != nil {
			tr.TLSClientConfig = l.Config
		}
		return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
	})
}

// add caches e under key, indexed by its user.
func (s *service) add(key [32]byte, e entry) {
	if old, ok := s.cache.Peek(key); ok && old.UserID != e.UserID {
		s.unindex(key, old.UserID) // the same credentials now name another user
	}
	s.mu.Lock()
	keys := s.byUser[e.UserID]
	if keys == nil {
		keys = map[[32]byte]struct{}{}
		s.byUser[e.UserID] = keys
	}
	keys[key] = struct{}{}
	s.mu.Unlock()
	s.cache.Add(key, e)
}

// evicted is the cache's callback (outside its lock) for an entry it
// dropped, full or removed: the index forgets the key unless the cache
// holds it again for the same user.
func (s *service) evicted(key [32]byte, e entry) {
	if cur, ok := s.cache.Peek(key); ok && cur.UserID == e.UserID {
		return
	}
	s.unindex(key, e.UserID)
}

func (s *service) unindex(key [32]byte, user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if keys := s.byUser[user]; keys != nil {
		delete(keys, key)
		if len(keys) == 0 {
			delete(s.byUser, user)
		}
	}
}

// evictUser drops every cached context of user.
func (s *service) evictUser(user string) {
	s.mu.Lock()
	keys := s.byUser[user]
	delete(s.byUser, user)
	s.mu.Unlock()
	for k := range keys {
		if e, ok := s.cache.Peek(k); ok && e.UserID == user {
			s.cache.Remove(k)
		}
	}
}

// Client looks user contexts up for one route.
type Client struct {
	o      Config
	http   *http.Client
	svc    *service
	ev     *routeEvents // nil without events
	shared *sharedLevel // nil without shared_cache
}

// NewClient validates o; routes with the same URL share one cache and
// client (the first route's cache size and concurrency bound apply).
func NewClient(o Config) (*Client, error) {
	config.FillZero(&o)
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := config.Validate(&o); err != nil { // the declaration and Check, for Go callers
		return nil, err
	}
	hc, err := httpClient(o)
	if err != nil {
		return nil, err
	}
	svc, err := shared(o)
	if err != nil {
		return nil, err
	}
	c := &Client{o: o, http: hc, svc: svc}
	if o.SharedCache != nil {
		if c.shared, err = openShared(o); err != nil {
			return nil, err
		}
	}
	if o.Events != nil {
		if c.ev, err = followEvents(o, svc); err != nil {
			return nil, err
		}
		if c.shared != nil {
			c.shared.noteWindow(EventsWindow(o))
			c.ev.v.attachShared(c.shared)
		}
	}
	return c, nil
}

var lookups = metrics.NewCounter("subgate_identity_lookups_total", "User-context lookups by outcome.", "outcome")

// traceHeaders are the W3C Trace Context headers forwarded, unchanged, to
// the identity service, so its span joins the caller's trace. They are not
// credentials: never part of the cache key.
var traceHeaders = []string{"traceparent", "tracestate"}

type traceKey struct{}

// WithTrace returns ctx carrying the client's trace headers (Kong's
// lower-cased header table) for the identity request.
func WithTrace(ctx context.Context, clientHeaders map[string][]string) context.Context {
	var t map[string]string
	for _, name := range traceHeaders {
		if v := clientHeaders[name]; len(v) > 0 && v[0] != "" && upstream.Safe(v[0]) {
			if t == nil {
				t = map[string]string{}
			}
			t[name] = v[0]
		}
	}
	if t == nil {
		return ctx
	}
	return context.WithValue(ctx, traceKey{}, t)
}

func traceFrom(ctx context.Context) map[string]string {
	t, _ := ctx.Value(traceKey{}).(map[string]string)
	return t
}

// attempt classes
type class int

const (
	success class = iota
	timeout
	unavailable
	final // a definitive non-success: pass it on
)

// Lookup resolves the caller's context from the credential headers it sent
// (creds: forwarded header name -> value, absent ones omitted).
func (c *Client) Lookup(ctx context.Context, creds map[string]string) (*Result, *denial.Denial) {
	return c.lookup(ctx, creds, "")
}

// lookup is Lookup for a caller verified as user want ("": no check): a
// fresh answer or a cached copy naming another user is refused, and a
// refused fresh answer is never cached.
func (c *Client) lookup(ctx context.Context, creds map[string]string, want string) (*Result, *denial.Denial) {
	ctx, cancel := context.WithTimeout(ctx, ms(c.o.DeadlineMs))
	defer cancel()
	key, cacheable := c.key(creds)
	read := false       // the fallback cache was read (counted once per lookup; see fallback)
	sharedRead := false // the shared level was read (once per lookup)
	refused := ""       // why a cached context was not served (identity events), for the 503's cause
	select {
	case c.svc.slots <- struct{}{}:
		defer func() { <-c.svc.slots }()
	case <-ctx.Done():
		if den := cancelled(ctx); den != nil {
			return nil, den
		}
		lookups.Inc("overloaded")
		return nil, denial.New(denial.IdentityTimeout, "too many identity lookups in flight")
	}
	began := time.Now()
	var last class
	attempts := 0
	for attempt := 1; attempt <= c.o.MaxAttempts; attempt++ {
		if den := cancelled(ctx); den != nil {
			return nil, den
		}
		attempts = attempt
		cl, got, den := c.attempt(ctx, creds)
		switch cl {
		case success:
			if den := c.matches(got, want); den != nil {
				if cacheable {
					c.forget(key) // these credentials now name another user: forget the old answer
				}
				lookups.Inc("rejected")
				return nil, den
			}
			got.Asked = began
			if cacheable {
				prev, _ := c.svc.cache.Peek(key)
				if c.shared != nil {
					c.sharedWrite(key, got, prev)
				}
				c.svc.add(key, got)
			}
			lookups.Inc("fresh")
			return &Result{Context: got, Attempts: attempt, Lookup: time.Since(began)}, nil
		case final:
			if cacheable && (den.Code == denial.IdentityUnauthorized || den.Code == denial.IdentityForbidden) {
				c.forget(key) // the identity service says no: forget what it said before
			}
			lookups.Inc("rejected")
			return nil, den
		case unavailable:
			if cacheable {
				e, den := c.fallback(key, want, &read, &refused)
				if den != nil {
					lookups.Inc("rejected")
					return nil, den
				}
				if e != nil {
					lookups.Inc("cache_fallback")
					return &Result{Context: e, Cached: true, Attempts: attempt, Lookup: time.Since(began)}, nil
				}
				if c.shared != nil && !sharedRead {
					sharedRead = true
					e, den := c.sharedFallback(ctx, key, want, &refused)
					if den != nil {
						lookups.Inc("rejected")
						return nil, den
					}
					if e != nil {
						cacheHits.Inc(c.svc.label)
						lookups.Inc("shared_fallback")
						return &Result{Context: e, Cached: true, Shared: true, Attempts: attempt, Lookup: time.Since(began)}, nil
					}
				}
			}
		}
		last = cl
		if attempt == c.o.MaxAttempts || !c.sleep(ctx, attempt) {
			break
		}
	}
	if den := cancelled(ctx); den != nil {
		return nil, den
	}
	if last == unavailable {
		lookups.Inc("unavailable")
		why := "no usable cached context"
		if refused != "" {
			why = "cached context not served: " + refused
		}
		return nil, denial.New(denial.IdentityUnavailable, "").WithRetryAfter(c.o.RetryAfterSeconds).
			WithCause(fmt.Sprintf("identity service %s unavailable (503 or connection failure) on %d attempts in %v, %s",
				c.o.IdentityURL, attempts, time.Since(began).Round(time.Millisecond), why))
	}
	lookups.Inc("timeout")
	return nil, denial.New(denial.IdentityTimeout, "").WithCause(fmt.Sprintf("identity service %s did not answer in time on %d attempts in %v",
		c.o.IdentityURL, attempts, time.Since(began).Round(time.Millisecond)))
}

// cancelled is the denial of a lookup its caller cancelled (pkg/chain: an
// earlier check denied), nil while the caller still waits. The caller
// discards it.
func cancelled(ctx context.Context) *denial.Denial {
	if !errors.Is(ctx.Err(), context.Canceled) {
		return nil
	}
	lookups.Inc("cancelled")
	return denial.New(denial.IdentityTimeout, "").WithCause("identity lookup cancelled by its caller")
}

// forget drops the credentials' cached context, locally and in the shared
// level.
func (c *Client) forget(key [32]byte) {
	c.svc.cache.Remove(key)
	if c.shared != nil {
		c.shared.remove(key)
	}
}

// sleep waits the backoff for attempt (full jitter), false if the deadline
// would pass first.
func (c *Client) sleep(ctx context.Context, attempt int) bool {
	d := time.Duration(rand.Int64N(int64(ms(c.o.BackoffMs)<<(attempt-1)) + 1))
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// key hashes the identity URL and the forwarded credentials: the cache
// never holds a raw credential. Without any credential nothing is cached.
func (c *Client) key(creds map[string]string) ([32]byte, bool) {
	h := sha256.New()
	h.Write([]byte(c.o.IdentityURL))
	any := false
	for _, name := range c.o.ForwardHeaders {
		v := creds[name]
		any = any || v != ""
		h.Write([]byte{0})
		h.Write([]byte(strings.ToLower(name)))
		h.Write([]byte{0})
		h.Write([]byte(v))
	}
	var k [32]byte
	copy(k[:], h.Sum(nil))
	return k, any
}

// attempt sends one request. Once sent, it ends at its deadlines only, not
// when the caller cancels ctx: aborting an HTTP/1.1 exchange in flight
// closes its keep-alive connection, while the identity service does the
// work all the same; the next lookup would pay a new connection.
func (c *Client) attempt(ctx context.Context, creds map[string]string) (class, *Context, *denial.Denial) {
	deadline := time.Now().Add(ms(c.o.AttemptTimeoutMs))
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	actx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, c.o.Method, c.o.IdentityURL, nil)
	if err != nil {
		return final, nil, denial.New(denial.IdentityError, "")
	}
	for name, v := range creds {
		req.Header.Set(name, v)
	}
	for name, v := range traceFrom(ctx) {
		req.Header.Set(name, v)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		if c.o.ConnectionErrorsAs503 {
			return unavailable, nil, nil
		}
		return timeout, nil, nil
	}
	defer resp.Body.Close()
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, int64(c.o.MaxBodyBytes)+1))
	switch s := resp.StatusCode; {
	case s >= 200 && s < 300:
		if rerr != nil {
			return timeout, nil, nil // the body did not arrive in time: as our own timeout
		}
		got, err := c.parse(resp.Header.Get("Content-Type"), body)
		if err != nil {
			return final, nil, denial.New(denial.IdentityError, "the identity service answered an unusable context").
				WithCause(fmt.Sprintf("identity service %s answered %d with an unusable context: %v", c.o.IdentityURL, s, err))
		}
		return success, got, nil
	case s == http.StatusRequestTimeout:
		return timeout, nil, nil
	case s == http.StatusServiceUnavailable:
		return unavailable, nil, nil
	case s == http.StatusUnauthorized:
		return final, nil, denial.New(denial.IdentityUnauthorized, "")
	case s == http.StatusForbidden:
		return final, nil, denial.New(denial.IdentityForbidden, "")
	case s >= 400 && s < 500:
		return final, nil, denial.Newf(denial.IdentityRejected, "the identity service answered %d", s).WithStatus(s)
	}
	return final, nil, denial.New(denial.IdentityError, "")
}

// parse validates a 2xx body: JSON by content type, within the size bound,
// valid UTF-8 (encoding/json would replace a bad byte in what the gateway
// reads, while the raw JSON goes upstream as it came, and Kong's protocol
// refuses it in a header), no member name twice at any depth (the gateway
// would read the last copy, an upstream parser maybe the first), no escaped
// lone surrogate (the gateway would read U+FFFD, the upstream the escape), an object
// with a non-empty string user id, fitting the upstream header. Anything
// else is an error, never a login, and never cached.
func (c *Client) parse(contentType string, body []byte) (*Context, error) {
	if !isJSON(contentType) {
		return nil, fmt.Errorf("content type %q is not JSON", contentType)
	}
	if len(body) > c.o.MaxBodyBytes {
		return nil, errors.New("context larger than the bound")
	}
	if !utf8.Valid(body) {
		return nil, errors.New("context is not valid UTF-8")
	}
	switch err := strictjson.Unambiguous(body); {
	case errors.Is(err, strictjson.ErrDuplicate):
		return nil, errors.New("context repeats a member name")
	case errors.Is(err, strictjson.ErrSurrogate):
		return nil, errors.New("context escapes a lone UTF-16 surrogate")
	}
	// Compact validates the syntax (one value, white space around it only);
	// only the members a route reads are decoded (Context.Field).
	compact := bytes.NewBuffer(make([]byte, 0, len(body)))
	if err := json.Compact(compact, body); err != nil || compact.Bytes()[0] != '{' {
		return nil, errors.New("not one JSON object")
	}
	e := &Context{Raw: compact.Bytes()}
	id, _ := e.Field(c.o.UserIDField).(string)
	if id == "" {
		return nil, fmt.Errorf("no %q in the context", c.o.UserIDField)
	}
	if !c.fits(e.Raw) {
		return nil, errors.New("context does not fit the upstream header")
	}
	e.UserID, e.StoredAt = id, c.o.Now()
	return e, nil
}

// isJSON reports whether a content type is JSON (application/json or
// */*+json), without mime.ParseMediaType's allocations for the two
// spellings identity services send.
func isJSON(contentType string) bool {
	switch contentType {
	case "application/json", "application/json; charset=utf-8":
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// fits reports whether a context can travel in this route's context header.
func (c *Client) fits(raw []byte) bool {
	return len(raw) <= c.o.MaxContextHeaderBytes && upstream.Safe(string(raw))
}

// matches refuses a context that names another user than want ("": no
// check), in constant time as payment-token compares customers.
func (c *Client) matches(e *Context, want string) *denial.Denial {
	if want == "" || subtle.ConstantTimeCompare([]byte(e.UserID), []byte(want)) == 1 {
		return nil
	}
	return denial.New(denial.IdentityUserMismatch, "").WithCause(fmt.Sprintf(
		"identity service %s names user %q, the verified token %q (match_user)", c.o.IdentityURL, e.UserID, want))
}
