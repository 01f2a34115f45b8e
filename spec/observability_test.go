package spec

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/subgate/subgate/docker/demosvc"
	"github.com/subgate/subgate/spec/gateway"
	"github.com/subgate/subgate/spec/kongsim"
	"github.com/subgate/subgate/spec/stack"
)

// observed starts the named plugin servers at Kong's default log level and
// loads yml; each request's model is kept for the test to read.
type observed struct {
	g    *gateway.Gateway
	log  *kongsim.ErrorLog
	reqs map[string]*kongsim.Request // by Kong's request id
}

func observe(t *testing.T, yml string, plugins ...string) *observed {
	t.Helper()
	e := startEdge(t, stack.EdgeOptions{Plugins: plugins, KongYML: []byte(yml)})
	o := &observed{g: e.Gateway, log: e.Log, reqs: map[string]*kongsim.Request{}}
	o.g.Observe = func(_ string, r *kongsim.Request) { o.reqs[r.ID] = r }
	return o
}

// observeEcho is observe on one service, the echo upstream, whose routes
// list is routes (YAML).
func observeEcho(t *testing.T, routes string, plugins ...string) *observed {
	t.Helper()
	upstream := httptest.NewServer(demosvc.Echo())
	t.Cleanup(upstream.Close)
	return observe(t, fmt.Sprintf("_format_version: \"3.0\"\nservices:\n  - name: echo\n    url: %s\n    routes:\n%s", upstream.URL, routes), plugins...)
}

func (o *observed) do(t *testing.T, path, token string) (*httptest.ResponseRecorder, *kongsim.Request) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	o.g.ServeHTTP(rec, req)
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

// Decisions reach Kong's log pipeline: a log plugin's view (what
// kong.log.serialize() returns, what file-log writes) carries the decision
// under subgate.<plugin> as log_decisions says, the denial's body, the
// X-Kong-Request-Id header and the serialized decision carry Kong's one
// request id, and the allow path's PDK calls grow only with "all".
func TestDecisionsInKongsLogPipeline(t *testing.T) {
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
	o := observe(t, fmt.Sprintf(`_format_version: "3.0"
plugins:
  - name: file-log
    config: {path: %s}
services:
  - name: echo
    url: %s
    routes:%s%s%s
`, fileLog, upstream.URL, route("deny", "deny"), route("all", "all"), route("none", "none")), "jwt-claims")
	good, expired := obsToken(t, time.Hour), obsToken(t, -time.Hour)
	table := "\n| log_decisions | outcome | PDK calls |\n| --- | --- | --- |\n"
	for _, c := range []struct {
		mode, token string
		status      int
		logged      bool
		calls       int
	}{
		{"deny", good, 200, false, 3}, {"deny", expired, 401, true, 4},
		{"all", good, 200, true, 4}, {"all", expired, 401, true, 4},
		{"none", good, 200, false, 3}, {"none", expired, 401, false, 3},
	} {
		rec, req := o.do(t, "/"+c.mode, c.token)
		if rec.Code != c.status || req == nil {
			t.Fatalf("%s: %d %s", c.mode, rec.Code, rec.Body)
		}
		calls := req.Calls("jwt-claims")
		table += fmt.Sprintf("| %s | %d | %d: %s |\n", c.mode, c.status, len(calls), strings.Join(calls, ", "))
		if len(calls) != c.calls {
			t.Errorf("%s %d: %d PDK calls %v, want %d", c.mode, c.status, len(calls), calls, c.calls)
		}
		entry := req.Serialize(rec.Code, c.mode)
		sub, _ := entry["subgate"].(map[string]any)
		dec, _ := sub["jwt-claims"].(map[string]any)
		if (dec != nil) != c.logged {
			t.Fatalf("%s %d: decision in the log entry = %v, want logged %v", c.mode, c.status, dec, c.logged)
		}
		if dec == nil {
			continue
		}
		b, _ := json.Marshal(dec)
		if strings.Contains(string(b), c.token) || strings.Contains(string(b), obsSecret) {
			t.Fatalf("the serialized decision holds a credential: %s", b)
		}
		if c.status == 200 {
			if dec["decision"] != "allow" || dec["customer_id"] != alice || dec["kid"] != "hs" || dec["jti"] != "jti-1" {
				t.Errorf("allow entry: %s", b)
			}
			continue
		}
		var body struct {
			Code      string `json:"code"`
			RequestID string `json:"request_id"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		id := rec.Header().Get("X-Kong-Request-Id")
		if dec["decision"] != "deny" || dec["code"] != "token_expired" || body.RequestID != id || dec["request_id"] != id || len(id) != 32 {
			t.Errorf("deny: header id %q, body %s, entry %s", id, rec.Body, b)
		}
	}
	t.Log(table)
	// file-log wrote one line per request, the same entry.
	raw, err := os.ReadFile(fileLog)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != 6 || !strings.Contains(lines[1], `"subgate":{"jwt-claims":{`) || !strings.Contains(lines[1], `"code":"token_expired"`) {
		t.Fatalf("file-log lines:\n%s", raw)
	}
	if strings.Contains(string(raw), good) {
		t.Fatal("file-log wrote the token")
	}
}

// A Redis outage is visible at Kong's default log level (notice): the
// plugin writes it through kong.log.warn inside the request, once per
// interval however many requests fail, while its own output stays at INFO.
func TestRedisOutageVisibleAtNotice(t *testing.T) {
	o := observeEcho(t, fmt.Sprintf(`      - name: subs
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
	seen := o.log.Seen()
	if n := strings.Count(seen, "ownership lookup failed"); n != 1 {
		t.Fatalf("at notice the outage shows %d times, want once per interval:\n%s", n, seen)
	}
	if !strings.Contains(seen, "[warn]") || !strings.Contains(seen, "[kong] pb_rpc.lua:233 subgate subscription-owner denied with 503 ownership_unavailable") {
		t.Fatalf("not a warn line of the plugin:\n%s", seen)
	}
}
