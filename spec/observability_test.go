package spec

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/subgate/subgate/docker/demosvc"
	"github.com/subgate/subgate/spec/gateway"
	"github.com/subgate/subgate/spec/kongsim"
	"github.com/subgate/subgate/spec/stack"
)

// observed is a gateway (the stand-in, or a real Kong) serving yml with the
// named plugin servers at Kong's default log level. Through the stand-in,
// each request's model is kept for the test to read (the PDK calls).
type observed struct {
	e    *stack.Edge
	g    *gateway.Gateway            // the stand-in; nil for Kong
	log  *kongsim.ErrorLog           // the stand-in's; nil for Kong
	reqs map[string]*kongsim.Request // by Kong's request id (the stand-in's only)
	mu   sync.Mutex
}

// observeOn starts it through the Kong executable kong ("": the stand-in).
func observeOn(t *testing.T, kong, yml string, plugins ...string) *observed {
	t.Helper()
	e := startEdge(t, stack.EdgeOptions{Plugins: plugins, KongYML: []byte(yml), Kong: kong})
	o := &observed{e: e, g: e.Gateway, log: e.Log, reqs: map[string]*kongsim.Request{}}
	if o.g != nil {
		o.g.Observe = func(_ string, r *kongsim.Request) { o.mu.Lock(); o.reqs[r.ID] = r; o.mu.Unlock() }
	}
	return o
}

// observeEchoOn is observeOn one service, the echo upstream, whose routes
// list is routes (YAML).
func observeEchoOn(t *testing.T, kong, routes string, plugins ...string) *observed {
	t.Helper()
	upstream := httptest.NewServer(demosvc.Echo())
	t.Cleanup(upstream.Close)
	return observeOn(t, kong, fmt.Sprintf("_format_version: \"3.0\"\nservices:\n  - name: echo\n    url: %s\n    routes:\n%s", upstream.URL, routes), plugins...)
}

// real reports whether a real Kong serves.
func (o *observed) real() bool { return o.g == nil }

// ServeHTTP sends r through the gateway: the stand-in's handler, or Kong's
// proxy over HTTP (the raw request URI and every header as given).
func (o *observed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if o.g != nil {
		o.g.ServeHTTP(w, r)
		return
	}
	out, err := http.NewRequest(r.Method, o.e.URL+"/", r.Body)
	if err != nil {
		http.Error(w, err.Error(), 599)
		return
	}
	out.URL.Opaque = r.RequestURI
	out.Header = r.Header.Clone()
	out.ContentLength = r.ContentLength
	resp, err := kongClient.Do(out)
	if err != nil {
		http.Error(w, err.Error(), 599)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

var kongClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableCompression: true}}

// URL is where a client reaches the gateway over HTTP.
func (o *observed) URL(t *testing.T) string {
	if o.real() {
		return o.e.URL
	}
	srv := httptest.NewServer(o.g)
	t.Cleanup(srv.Close)
	return srv.URL
}

// seen is what an operator reads of the plugins in Kong's error log at
// notice (stack.Edge.PluginLog).
func (o *observed) seen() string { return strings.Join(o.e.PluginLog(), "\n") }

func (o *observed) do(t *testing.T, path, token string) (*httptest.ResponseRecorder, *kongsim.Request) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	o.ServeHTTP(rec, req)
	o.mu.Lock()
	defer o.mu.Unlock()
	return rec, o.reqs[rec.Header().Get("X-Kong-Request-Id")]
}

const obsSecret = "0123456789abcdef0123456789abcdef-observability"

func obsToken(t *testing.T, exp time.Duration) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": alice, "country": "DE", "jti": "jti-1", "exp": time.Now().Add(exp).Unix()})
	tok.Header["kid"] = "hs"
	s, err := tok.SignedString([]byte(obsSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Decisions reach Kong's log pipeline: file-log's entry (what
// kong.log.serialize() returns) carries the decision under subgate.<plugin>
// as log_decisions says, the denial's body, the X-Kong-Request-Id header and
// the serialized decision carry Kong's one request id, no credential is in
// the entry, and (through the stand-in, which counts them) the allow path's
// PDK calls grow only with "all". Through the stand-in and a real Kong.
func TestDecisionsInKongsLogPipeline(t *testing.T) {
	eachGateway(t, func(t *testing.T, kong string) {
		upstream := httptest.NewServer(demosvc.Echo())
		defer upstream.Close()
		route := func(name, mode string) string {
			return fmt.Sprintf(`
      - name: %s
        paths: [/%s]
        plugins:
          - name: jwt-claims
            config: {keys: [{kid: hs, algorithm: HS256, secret: %q}], log_decisions: %s}`, name, name, obsSecret, mode)
		}
		fileLog := filepath.Join(t.TempDir(), "kong-access.log")
		o := observeOn(t, kong, fmt.Sprintf(`_format_version: "3.0"
plugins:
  - name: file-log
    config: {path: %s}
services:
  - name: echo
    url: %s
    routes:%s%s%s
`, fileLog, upstream.URL, route("deny", "deny"), route("all", "all"), route("none", "none")), "jwt-claims")
		good, expired := obsToken(t, time.Hour), obsToken(t, -time.Hour)
		cases := []struct {
			mode, token string
			status      int
			logged      bool
			calls       int
		}{
			{"deny", good, 200, false, 3}, {"deny", expired, 401, true, 4},
			{"all", good, 200, true, 4}, {"all", expired, 401, true, 4},
			{"none", good, 200, false, 3}, {"none", expired, 401, false, 3},
		}
		table := "\n| log_decisions | outcome | PDK calls |\n| --- | --- | --- |\n"
		recs := make([]*httptest.ResponseRecorder, len(cases))
		for i, c := range cases {
			rec, req := o.do(t, "/"+c.mode, c.token)
			recs[i] = rec
			if rec.Code != c.status || (req == nil && !o.real()) {
				t.Fatalf("%s: %d %s", c.mode, rec.Code, rec.Body)
			}
			if req == nil {
				continue
			}
			calls := req.Calls("jwt-claims")
			table += fmt.Sprintf("| %s | %d | %d: %s |\n", c.mode, c.status, len(calls), strings.Join(calls, ", "))
			if len(calls) != c.calls {
				t.Errorf("%s %d: %d PDK calls %v, want %d", c.mode, c.status, len(calls), calls, c.calls)
			}
		}
		if !o.real() {
			t.Log(table)
		}
		// file-log wrote one line per request (Kong writes it in the log
		// phase, after the answer, so not always in the requests' order).
		byID := map[any]map[string]any{}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			entries, err := stack.FileLog(fileLog)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				req, _ := e["request"].(map[string]any)
				byID[req["id"]] = e
			}
			missing := 0
			for _, rec := range recs {
				if byID[rec.Header().Get("X-Kong-Request-Id")] == nil {
					missing++
				}
			}
			if missing == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("file-log has no entry for %d of the %d requests", missing, len(recs))
			}
		}
		raw, _ := os.ReadFile(fileLog)
		if strings.Contains(string(raw), good) || strings.Contains(string(raw), strings.Split(expired, ".")[2]) || strings.Contains(string(raw), obsSecret) {
			t.Fatal("file-log wrote a credential")
		}
		for i, c := range cases {
			rec := recs[i]
			id := rec.Header().Get("X-Kong-Request-Id")
			entry, ok := byID[id]
			if !ok || len(id) != 32 {
				t.Fatalf("%s %d: no file-log entry for request %q", c.mode, c.status, id)
			}
			sub, _ := entry["subgate"].(map[string]any)
			dec, _ := sub["jwt-claims"].(map[string]any)
			if (dec != nil) != c.logged {
				t.Fatalf("%s %d: decision in the log entry = %v, want logged %v", c.mode, c.status, dec, c.logged)
			}
			if dec == nil {
				continue
			}
			b, _ := json.Marshal(dec)
			if c.status == 200 {
				if dec["decision"] != "allow" || dec["customer_id"] != alice || dec["kid"] != "hs" || dec["jti"] != "jti-1" {
					t.Errorf("allow entry: %s", b)
				}
				// Kong drops a false boolean from Go: the facts survive
				// as strings.
				if dec["cached"] != "false" {
					t.Errorf("allow entry of a first verification: cached %v, want \"false\": %s", dec["cached"], b)
				}
				continue
			}
			var body struct {
				Code      string `json:"code"`
				RequestID string `json:"request_id"`
			}
			_ = json.Unmarshal(rec.Body.Bytes(), &body)
			if dec["decision"] != "deny" || dec["code"] != "token_expired" || dec["status"] != float64(401) || body.RequestID != id || dec["request_id"] != id {
				t.Errorf("deny: header id %q, body %s, entry %s", id, rec.Body, b)
			}
		}
	})
}

// A Redis outage is visible at Kong's default log level (notice): the
// plugin writes it through kong.log.warn inside the request, once per
// interval however many requests fail, while its own output stays at INFO.
func TestRedisOutageVisibleAtNotice(t *testing.T) {
	eachGateway(t, func(t *testing.T, kong string) { redisOutageVisibleAtNotice(t, kong) })
}

func redisOutageVisibleAtNotice(t *testing.T, kong string) {
	o := observeEchoOn(t, kong, fmt.Sprintf(`      - name: subs
        paths: [/subscriptions]
        plugins:
          - name: jwt-claims
            config: {keys: [{kid: hs, algorithm: HS256, secret: %q}]}
          - name: subscription-owner
            config: {redis: {addresses: ["127.0.0.1:1"]}}
`, obsSecret), "jwt-claims", "subscription-owner")
	tok := obsToken(t, time.Hour)
	for i := 0; i < 5; i++ {
		rec, _ := o.do(t, "/subscriptions/1234", tok)
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "ownership_unavailable") {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
	seen := o.seen()
	if n := strings.Count(seen, "ownership lookup failed"); n != 1 {
		t.Fatalf("at notice the outage shows %d times, want once per interval:\n%s", n, seen)
	}
	if !strings.Contains(seen, "[warn]") || !strings.Contains(seen, "[kong] pb_rpc.lua:233 subgate subscription-owner denied with 503 ownership_unavailable") {
		t.Fatalf("not a warn line of the plugin:\n%s", seen)
	}
}
