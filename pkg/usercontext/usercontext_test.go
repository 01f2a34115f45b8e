package usercontext

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/subgate/subgate/pkg/denial"
)

// identity is a scripted identity service: each request takes the next
// answer of the script (the last one repeats); an answer is a status, or
// "slow" (sleeps past the attempt timeout), or a raw body/content type.
type identity struct {
	mu     sync.Mutex
	script []answer
	hits   atomic.Int64
	srv    *httptest.Server
}

type answer struct {
	status int
	body   string
	ctype  string
	slow   time.Duration
}

func ok(user string) answer {
	return answer{status: 200, body: fmt.Sprintf(`{"user_id":%q,"roles":["customer"]}`, user)}
}

func newIdentity(t testing.TB, script ...answer) *identity {
	id := &identity{script: script}
	id.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := id.hits.Add(1)
		id.mu.Lock()
		a := id.script[min(int(n)-1, len(id.script)-1)]
		id.mu.Unlock()
		if a.slow > 0 {
			time.Sleep(a.slow)
		}
		body := a.body
		if a.status == 200 && body == "" {
			// default: echo the caller's credential as its user id
			body = fmt.Sprintf(`{"user_id":%q}`, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		}
		ct := a.ctype
		if ct == "" {
			ct = "application/json"
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(a.status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(id.srv.Close)
	return id
}

func (id *identity) set(script ...answer) {
	id.mu.Lock()
	id.script = script
	id.mu.Unlock()
	id.hits.Store(0)
}

func client(t *testing.T, url string, mod func(*Config)) *Client {
	t.Helper()
	o := Config{IdentityURL: url, AttemptTimeoutMs: 200, BackoffMs: 1, DeadlineMs: 2000, MaxStaleSeconds: 60, RetryAfterSeconds: 1}
	if mod != nil {
		mod(&o)
	}
	c, err := NewClient(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var creds = map[string]string{"Authorization": "Bearer u1"}

func wantCode(t *testing.T, d *denial.Denial, code denial.Code, status int) {
	t.Helper()
	if d == nil || d.Code != code || d.Status != status {
		t.Fatalf("denial %+v, want %s %d", d, code, status)
	}
}

func TestFreshAnswerReplacesTheCacheAndNeverReadsIt(t *testing.T) {
	id := newIdentity(t, answer{status: 200, body: `{"user_id":"u1","v":1}`})
	c := client(t, id.srv.URL, nil)
	if out, d := c.Lookup(context.Background(), creds); d != nil || out.Cached || out.Field("v") != float64(1) {
		t.Fatalf("%+v %v", out, d)
	}
	id.set(answer{status: 200, body: `{"user_id":"u1","v":2}`})
	if out, _ := c.Lookup(context.Background(), creds); out.Cached || out.Field("v") != float64(2) {
		t.Fatalf("2xx must be fresh: %+v", out)
	}
	id.set(answer{status: 503})
	out, d := c.Lookup(context.Background(), creds)
	if d != nil || !out.Cached || out.Field("v") != float64(2) {
		t.Fatalf("on 503 the latest success must serve: %+v %v", out, d)
	}
	if id.hits.Load() != 1 {
		t.Fatalf("503 with a cached copy must stop retrying at once; %d attempts", id.hits.Load())
	}
}

func TestTimeoutRetriesAndNeverUsesTheCache(t *testing.T) {
	id := newIdentity(t, ok("u1"))
	c := client(t, id.srv.URL, func(o *Config) { o.MaxAttempts = 3 })
	c.Lookup(context.Background(), creds) // cache u1
	id.set(answer{status: 408}, answer{status: 408}, ok("u1"))
	out, d := c.Lookup(context.Background(), creds)
	if d != nil || out.Cached || out.Attempts != 3 {
		t.Fatalf("408,408,200: %+v %v", out, d)
	}
	id.set(answer{status: 408})
	_, d = c.Lookup(context.Background(), creds)
	wantCode(t, d, denial.IdentityTimeout, 504)
	if id.hits.Load() != 3 {
		t.Fatalf("attempts %d, want 3", id.hits.Load())
	}
}

func TestUnavailableWithoutUsableCache(t *testing.T) {
	id := newIdentity(t, answer{status: 503})
	c := client(t, id.srv.URL, func(o *Config) { o.MaxAttempts = 4 })
	_, d := c.Lookup(context.Background(), creds)
	wantCode(t, d, denial.IdentityUnavailable, 503)
	if d.RetryAfter != 1 || id.hits.Load() != 4 {
		t.Fatalf("retry-after %d, attempts %d", d.RetryAfter, id.hits.Load())
	}
	// 503 then 200: the retry succeeds.
	id.set(answer{status: 503}, ok("u1"))
	if out, d := c.Lookup(context.Background(), creds); d != nil || out.Cached {
		t.Fatalf("%+v %v", out, d)
	}
	// A cached copy older than max_stale is not served.
	now := time.Now()
	old := client(t, id.srv.URL, func(o *Config) { o.MaxStaleSeconds = 1; o.Now = func() time.Time { return now } })
	id.set(ok("u2"))
	old.Lookup(context.Background(), map[string]string{"Authorization": "Bearer u2"})
	now = now.Add(2 * time.Second)
	id.set(answer{status: 503})
	_, d = old.Lookup(context.Background(), map[string]string{"Authorization": "Bearer u2"})
	wantCode(t, d, denial.IdentityUnavailable, 503)
}

func TestClientErrorsPassOnAndEvict(t *testing.T) {
	id := newIdentity(t, ok("u1"))
	c := client(t, id.srv.URL, nil)
	for _, tc := range []struct {
		status int
		code   denial.Code
		want   int
	}{{401, denial.IdentityUnauthorized, 401}, {403, denial.IdentityForbidden, 403}} {
		id.set(ok("u1"))
		c.Lookup(context.Background(), creds) // cached
		id.set(answer{status: tc.status})
		_, d := c.Lookup(context.Background(), creds)
		wantCode(t, d, tc.code, tc.want)
		id.set(answer{status: 503})
		_, d = c.Lookup(context.Background(), creds)
		wantCode(t, d, denial.IdentityUnavailable, 503) // the copy was evicted
	}
	for _, s := range []int{400, 404, 429} {
		id.set(answer{status: s})
		_, d := c.Lookup(context.Background(), creds)
		wantCode(t, d, denial.IdentityRejected, s)
	}
}

func TestServerErrorsNeverUseTheCache(t *testing.T) {
	id := newIdentity(t, ok("u1"))
	c := client(t, id.srv.URL, nil)
	c.Lookup(context.Background(), creds)
	for _, s := range []int{500, 502, 504} {
		id.set(answer{status: s})
		_, d := c.Lookup(context.Background(), creds)
		wantCode(t, d, denial.IdentityError, 502)
	}
}

// Content types are read as MIME types, whatever their spelling.
func TestJSONContentTypes(t *testing.T) {
	for ct, want := range map[string]bool{"application/json": true, "application/json; charset=utf-8": true,
		"Application/JSON; Charset=UTF-8": true, "application/problem+json": true, "application/json;": true,
		"text/json": false, "application/jsonx": false, "": false} {
		if got := isJSON(ct); got != want {
			t.Errorf("isJSON(%q) = %v, want %v", ct, got, want)
		}
	}
}

func TestMalformedSuccessIsAnErrorNeverALogin(t *testing.T) {
	id := newIdentity(t, ok("u1"))
	c := client(t, id.srv.URL, func(o *Config) { o.MaxBodyBytes = 256 })
	for name, a := range map[string]answer{
		"not JSON":    {status: 200, body: "<html>hi</html>", ctype: "text/html"},
		"bad JSON":    {status: 200, body: `{"user_id":`},
		"array":       {status: 200, body: `["u1"]`},
		"two objects": {status: 200, body: `{"user_id":"u1"}{"user_id":"u2"}`},
		"no user id":  {status: 200, body: `{"name":"x"}`},
		"numeric id":  {status: 200, body: `{"user_id":7}`},
		"too large":   {status: 200, body: `{"user_id":"u1","pad":"` + strings.Repeat("x", 300) + `"}`},
		"wrong ctype": {status: 200, body: `{"user_id":"u1"}`, ctype: "text/plain"},
		"a stray ]":   {status: 200, body: `{"user_id":"u1"}]`},
		"null":        {status: 200, body: `null`},
		"json-ish":    {status: 200, body: `{"user_id":"u1"}`, ctype: "application/jsonx"},
	} {
		id.set(a)
		_, d := c.Lookup(context.Background(), map[string]string{"Authorization": "Bearer " + name})
		if d == nil || d.Code != denial.IdentityError {
			t.Errorf("%s: %+v", name, d)
		}
		id.set(answer{status: 503})
		_, d = c.Lookup(context.Background(), map[string]string{"Authorization": "Bearer " + name})
		if d == nil || d.Code != denial.IdentityUnavailable {
			t.Errorf("%s: a malformed answer was cached: %+v", name, d)
		}
	}
}

func TestConnectionFailures(t *testing.T) {
	// A port nothing listens on.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	url := "http://" + l.Addr().String()
	l.Close()
	c := client(t, url, nil)
	_, d := c.Lookup(context.Background(), creds)
	wantCode(t, d, denial.IdentityTimeout, 504)

	// Opted in: a refused connection is a 503, and the cache may serve.
	id := newIdentity(t, ok("u1"))
	c503 := client(t, id.srv.URL, func(o *Config) { o.ConnectionErrorsAs503 = true })
	c503.Lookup(context.Background(), creds)
	id.srv.Close()
	out, d := c503.Lookup(context.Background(), creds)
	if d != nil || !out.Cached {
		t.Fatalf("connection_errors_as_503: %+v %v", out, d)
	}
}

func TestSlowServiceRespectsTheDeadline(t *testing.T) {
	id := newIdentity(t, answer{status: 200, body: `{"user_id":"u1"}`, slow: 300 * time.Millisecond})
	c := client(t, id.srv.URL, func(o *Config) {
		o.AttemptTimeoutMs = 100
		o.DeadlineMs = 250
		o.MaxAttempts = 10
	})
	start := time.Now()
	_, d := c.Lookup(context.Background(), creds)
	wantCode(t, d, denial.IdentityTimeout, 504)
	if el := time.Since(start); el > 400*time.Millisecond {
		t.Fatalf("lookup held the worker %v; deadline 250ms", el)
	}
}

func TestNoCredentialsNothingCached(t *testing.T) {
	id := newIdentity(t, answer{status: 200, body: `{"user_id":"anonymous"}`})
	c := client(t, id.srv.URL, nil)
	c.Lookup(context.Background(), nil)
	id.set(answer{status: 503})
	_, d := c.Lookup(context.Background(), nil)
	wantCode(t, d, denial.IdentityUnavailable, 503)
}

// TestSoakFlippingService runs many concurrent callers while the identity
// service flips between 200 and 503. No caller may ever receive another
// caller's context, and no cached context older than max_stale is served.
func TestSoakFlippingService(t *testing.T) {
	id := newIdentity(t, ok(""))
	var down atomic.Bool
	id.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			w.WriteHeader(503)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"user_id":%q}`, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	})
	const maxStale = time.Second // max_stale_seconds has a one-second grain
	c := client(t, id.srv.URL, func(o *Config) { o.MaxStaleSeconds = int(maxStale / time.Second); o.CacheSize = 64 })
	stop := time.Now().Add(2500 * time.Millisecond)
	go func() {
		for time.Now().Before(stop) {
			down.Store(!down.Load())
			time.Sleep(time.Duration(10+time.Now().UnixNano()%40) * time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	var served, fromCache, denied atomic.Int64
	for caller := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			me := fmt.Sprintf("user-%d", caller)
			for time.Now().Before(stop) {
				out, d := c.Lookup(context.Background(), map[string]string{"Authorization": "Bearer " + me})
				if d != nil {
					denied.Add(1)
					continue
				}
				served.Add(1)
				if out.UserID != me {
					t.Errorf("%s received %s's context", me, out.UserID)
					return
				}
				if out.Cached {
					fromCache.Add(1)
					if age := time.Since(out.StoredAt); age > maxStale+50*time.Millisecond {
						t.Errorf("served a context %v old; max_stale %v", age, maxStale)
					}
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("served %d (%d from cache), denied %d", served.Load(), fromCache.Load(), denied.Load())
	if fromCache.Load() == 0 || served.Load() == fromCache.Load() {
		t.Fatal("the soak did not exercise both fresh and cached answers")
	}
}

func TestOptionsValidated(t *testing.T) {
	for _, o := range []Config{{IdentityURL: ""}, {IdentityURL: "ftp://x"}, {IdentityURL: "http://x", ForwardHeaders: []string{""}}} {
		if _, err := NewClient(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// W3C trace headers reach the identity service unchanged; none is invented.
func TestTraceContextIsForwarded(t *testing.T) {
	var got []http.Header
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Clone())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"user_id":"u1"}`))
	}))
	defer srv.Close()
	d, err := New(Config{IdentityURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	h := map[string][]string{"authorization": {"Bearer x"}, "traceparent": {tp}, "tracestate": {"vendor=1"}}
	if _, _, den := d.lookup(context.Background(), h, nil); den != nil {
		t.Fatal(den)
	}
	if len(got) != 1 || got[0].Get("Traceparent") != tp || got[0].Get("Tracestate") != "vendor=1" {
		t.Fatalf("identity saw %v", got)
	}
	// No trace headers: none sent.
	if _, _, den := d.lookup(context.Background(), map[string][]string{"authorization": {"Bearer y"}}, nil); den != nil {
		t.Fatal(den)
	}
	if got[1].Get("Traceparent") != "" {
		t.Fatalf("a traceparent was invented: %v", got[1])
	}
}

// Field reads a top-level member as encoding/json decodes it, plain
// strings without decoding.
func TestField(t *testing.T) {
	e := &Context{Raw: []byte(`{"id":"u1","esc":"a\"b\u00e9","n":1.5,"ok":false,"o":{"id":"inner"},"l":[1]}`)}
	for name, want := range map[string]any{"id": "u1", "esc": "a\"bé", "n": 1.5, "ok": false,
		"o": map[string]any{"id": "inner"}, "l": []any{1.0}, "missing": nil, "ID": nil} {
		if got := e.Field(name); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %#v, want %#v", name, got, want)
		}
	}
}
