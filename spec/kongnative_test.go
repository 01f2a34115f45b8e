package spec

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/subgate/subgate/docker/demosvc"
	"github.com/subgate/subgate/spec/stack"
)

// Issue 24: the verified caller becomes Kong's consumer, and the plugins
// keep Kong's conventions (protocols, preflight, priorities). Kong is the
// truth here: Kong's own plugins (rate-limiting, acl, cors, file-log) read
// what subgate told Kong.

const nativeSecret = "0123456789abcdef0123456789abcdef-kong-native"

// The customers: alice and bob are Kong consumers (username = customer id),
// carol is not.
const (
	carol = "7d3e2a10-1c4b-4a5e-9f00-3c2b1a000003"
	// aliceConsumer is alice's Kong consumer id (a declarative id).
	aliceConsumer = "0b9e3a77-5d1c-4f7e-8a6b-000000000a11"
)

func nativeToken(t *testing.T, sub string) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "country": "DE", "exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"] = "hs"
	s, err := tok.SignedString([]byte(nativeSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// jwtConfig is jwt-claims' config on these routes, with extra (flow YAML).
func jwtConfig(extra string) string {
	if extra != "" {
		extra = ", " + extra
	}
	return fmt.Sprintf(`{keys: [{kid: hs, algorithm: HS256, secret: %q}]%s}`, nativeSecret, extra)
}

func bearerOf(t *testing.T, sub string) http.Header {
	return http.Header{"Authorization": {"Bearer " + nativeToken(t, sub)}}
}

// echoed is the echo upstream's answer: the headers it received.
func echoed(t *testing.T, body []byte) map[string]string {
	t.Helper()
	var e struct{ Headers map[string]string }
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("not the echo's answer: %s", body)
	}
	return e.Headers
}

func code(body []byte) string {
	var b struct{ Code string }
	_ = json.Unmarshal(body, &b)
	return b.Code
}

// Through a real Kong with declarative consumers: rate-limiting counts
// each customer apart by consumer and by credential, acl allows and denies
// by the consumer's groups, file-log's entry names the consumer and the
// credential, the upstream gets Kong's consumer headers (a client's copy
// never), and a caller Kong has no consumer for is refused
// (consumer_unknown) or, where the route says, counted by credential alone.
func TestConsumerMappingThroughKong(t *testing.T) {
	kong := requireKong(t)
	upstream := httptest.NewServer(demosvc.Echo())
	t.Cleanup(upstream.Close)
	fileLog := filepath.Join(t.TempDir(), "kong-access.log")
	mapped := jwtConfig("credential_claim: sub, consumer_claim: sub")
	yml := fmt.Sprintf(`_format_version: "3.0"
consumers:
  - username: %[1]s
    id: %[2]s
    custom_id: cust-alice
    acls: [{group: premium}]
  - username: %[3]s
    custom_id: cust-bob
    acls: [{group: basic}]
plugins:
  - name: file-log
    config: {path: %[4]s}
services:
  - name: echo
    url: %[5]s
    routes:
      - name: by-consumer
        paths: [/by-consumer]
        plugins:
          - {name: jwt-claims, config: %[6]s}
          - {name: rate-limiting, config: {hour: 2, limit_by: consumer, policy: local}}
      - name: by-credential
        paths: [/by-credential]
        plugins:
          - {name: jwt-claims, config: %[7]s}
          - {name: rate-limiting, config: {hour: 2, limit_by: credential, policy: local}}
      - name: premium
        paths: [/premium]
        plugins:
          - {name: jwt-claims, config: %[6]s}
          - {name: acl, config: {allow: [premium]}}
      - name: subgate-premium
        paths: [/subgate-premium]
        plugins:
          - {name: subgate, config: {jwt: %[6]s}}
          - {name: acl, config: {allow: [premium]}}
      - name: fallback
        paths: [/fallback]
        plugins:
          - {name: jwt-claims, config: %[8]s}
          - {name: rate-limiting, config: {hour: 2, limit_by: credential, policy: local}}
`, alice, aliceConsumer, bob, fileLog, upstream.URL, mapped, jwtConfig("credential_claim: sub"),
		jwtConfig("credential_claim: sub, consumer_claim: sub, consumer_missing: credential"))
	e := startEdge(t, stack.EdgeOptions{Plugins: []string{"jwt-claims", "subgate"}, KongYML: []byte(yml), Kong: kong})

	// rate-limiting: two an hour per customer, each counted apart (carol,
	// no consumer, by her credential where the route falls back to it).
	for _, route := range []string{"/by-consumer", "/by-credential", "/fallback"} {
		for _, c := range []struct {
			who    string
			status []int
		}{{alice, []int{200, 200, 429}}, {bob, []int{200, 200, 429}}, {carol, []int{200, 200, 429}}} {
			if route == "/by-consumer" && c.who == carol {
				c.status = []int{403} // no consumer: consumer_unknown, before rate-limiting counts
			}
			for n, want := range c.status {
				// rate-limiting counts in a timer after the request
				// (handler.lua timer_at(0, increment)): a burst outruns it.
				time.Sleep(200 * time.Millisecond)
				status, hdr, body := send(t, e.URL, "GET", route, bearerOf(t, c.who))
				if status != want {
					t.Errorf("%s, %s, request %d: %d %v, want %d", route, c.who[len(c.who)-1:], n+1, status, hdr, want)
				}
				if want == 403 && code(body) != "consumer_unknown" {
					t.Errorf("%s: %s", route, body)
				}
			}
		}
	}

	// acl by the consumer's groups; carol is no consumer.
	h := bearerOf(t, alice)
	for _, spoof := range []string{"X-Consumer-Id", "X-Consumer-Username", "X-Consumer-Custom-Id", "X-Credential-Identifier", "X-Anonymous-Consumer"} {
		h.Set(spoof, "spoofed")
	}
	status, _, body := send(t, e.URL, "GET", "/premium", h)
	if status != 200 {
		t.Fatalf("alice on /premium: %d %s", status, body)
	}
	up := echoed(t, body)
	for name, want := range map[string]string{"X-Consumer-Id": aliceConsumer, "X-Consumer-Username": alice, "X-Consumer-Custom-Id": "cust-alice",
		"X-Credential-Identifier": alice, "X-Anonymous-Consumer": "", "X-Consumer-Groups": "premium"} {
		if up[name] != want {
			t.Errorf("upstream %s = %q, want %q", name, up[name], want)
		}
	}
	if status, _, body := send(t, e.URL, "GET", "/premium", bearerOf(t, bob)); status != 403 || !strings.Contains(string(body), "You cannot consume this service") {
		t.Errorf("bob on /premium: %d %s (want acl's 403)", status, body)
	}
	for _, route := range []string{"/premium", "/subgate-premium"} {
		if status, _, body := send(t, e.URL, "GET", route, bearerOf(t, carol)); status != 403 || code(body) != "consumer_unknown" {
			t.Errorf("carol on %s: %d %s", route, status, body)
		}
	}
	// subgate's jwt section maps the same way.
	if status, _, body := send(t, e.URL, "GET", "/subgate-premium", bearerOf(t, alice)); status != 200 || echoed(t, body)["X-Consumer-Id"] != aliceConsumer {
		t.Errorf("alice on /subgate-premium: %d %s", status, body)
	}
	if status, _, body := send(t, e.URL, "GET", "/subgate-premium", bearerOf(t, bob)); status != 403 || !strings.Contains(string(body), "You cannot consume this service") {
		t.Errorf("bob on /subgate-premium: %d %s (want acl's 403)", status, body)
	}

	// file-log: the consumer and the credential of alice's request.
	var entry map[string]any
	for deadline := time.Now().Add(5 * time.Second); entry == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		entries, err := stack.FileLog(fileLog)
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range entries {
			if r, _ := en["route"].(map[string]any); r["name"] == "premium" {
				if resp, _ := en["response"].(map[string]any); resp["status"] == float64(200) {
					entry = en
				}
			}
		}
	}
	if entry == nil {
		t.Fatal("no file-log entry of alice's request on /premium")
	}
	consumer, _ := entry["consumer"].(map[string]any)
	cred, _ := entry["authenticated_entity"].(map[string]any)
	if consumer["id"] != aliceConsumer || consumer["username"] != alice || consumer["custom_id"] != "cust-alice" ||
		cred["id"] != alice || cred["consumer_id"] != aliceConsumer {
		b, _ := json.Marshal(map[string]any{"consumer": consumer, "authenticated_entity": cred})
		t.Errorf("file-log entry: %s", b)
	}
	b, _ := json.Marshal(map[string]any{"consumer": consumer, "authenticated_entity": cred})
	t.Logf("file-log names the consumer: %s", b)
	if t.Failed() {
		t.Log(e.Kong.ErrorLog())
	}
}
