package spec

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/subgate/subgate/docker/demosvc"
	"github.com/subgate/subgate/pkg/docblock"
	"github.com/subgate/subgate/pkg/kongx"
	"github.com/subgate/subgate/spec/realkong"
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
	kong := realkong.Require(t)
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

// CORS preflights. Checked by default (a preflight carries no token: 401);
// with run_on_preflight: false one passes jwt-claims and user-context after
// it unchecked (the identity service is never asked, the client's copy of
// an owned header never reaches the upstream), while an OPTIONS that is no
// preflight is still checked. Through a real Kong also with Kong's cors
// plugin, which answers the preflight before any subgate plugin runs and
// puts its headers on subgate's denials too (the stand-in models no cors).
func TestPreflightThroughKong(t *testing.T) {
	eachGateway(t, func(t *testing.T, kong string) {
		var asked atomic.Int32
		identity := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			asked.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"user_id":"x"}`))
		}))
		t.Cleanup(identity.Close)
		routes := fmt.Sprintf(`
      - name: checked
        paths: [/checked]
        plugins:
          - {name: jwt-claims, config: %[1]s}
      - name: passed
        paths: [/passed]
        plugins:
          - {name: jwt-claims, config: %[2]s}
          - {name: user-context, config: {identity_url: %[3]q}}`, jwtConfig(""), jwtConfig("run_on_preflight: false"), identity.URL)
		if kong != "" {
			routes += fmt.Sprintf(`
      - name: cors
        paths: [/cors]
        plugins:
          - {name: cors, config: {origins: ["https://app.example"]}}
          - {name: jwt-claims, config: %s}`, jwtConfig(""))
		}
		o := observeEchoOn(t, kong, routes, "jwt-claims", "user-context")
		url := o.URL(t)
		preflight := http.Header{"Origin": {"https://app.example"}, "Access-Control-Request-Method": {"GET"}, "X-Customer-Id": {"spoofed"}}
		if status, _, body := send(t, url, "OPTIONS", "/checked", preflight); status != 401 || code(body) != "token_missing" {
			t.Errorf("checked preflight: %d %s", status, body)
		}
		status, _, body := send(t, url, "OPTIONS", "/passed", preflight)
		if status != 200 || asked.Load() != 0 {
			t.Fatalf("passed preflight: %d %s, identity asked %d times", status, body, asked.Load())
		}
		if up := echoed(t, body); up["X-Customer-Id"] != "" || up["Access-Control-Request-Method"] != "GET" {
			t.Errorf("upstream of the passed preflight: %v", up)
		}
		if status, _, body := send(t, url, "OPTIONS", "/passed", http.Header{"Origin": {"https://app.example"}}); status != 401 || code(body) != "token_missing" {
			t.Errorf("OPTIONS without Access-Control-Request-Method: %d %s", status, body)
		}
		if status, _, body := send(t, url, "GET", "/passed", preflight); status != 401 || code(body) != "token_missing" {
			t.Errorf("GET with preflight headers: %d %s", status, body)
		}
		if kong == "" {
			return
		}
		status, hdr, body := send(t, url, "OPTIONS", "/cors", preflight)
		if status != 200 || hdr.Get("Access-Control-Allow-Origin") != "https://app.example" || len(body) != 0 {
			t.Errorf("cors preflight: %d %v %s", status, hdr, body)
		}
		status, hdr, body = send(t, url, "GET", "/cors", http.Header{"Origin": {"https://app.example"}})
		if status != 401 || code(body) != "token_missing" || hdr.Get("Access-Control-Allow-Origin") != "https://app.example" {
			t.Errorf("cors, no token: %d %v %s", status, hdr, body)
		}
		h := bearerOf(t, alice)
		h.Set("Origin", "https://app.example")
		if status, hdr, _ := send(t, url, "GET", "/cors", h); status != 200 || hdr.Get("Access-Control-Allow-Origin") != "https://app.example" {
			t.Errorf("cors, allowed: %d %v", status, hdr)
		}
	})
}

// Kong's conventions, as a real Kong 3.9.3 applies them to the plugins'
// -dump schemas. protocols: a plugin entity naming gRPC is refused at
// load (POST /config runs the same declarative validation as kong start);
// Kong's DB-less mode does not check a plugin's protocols against its
// route's (kong/db/dao/plugins.lua does so only on the Admin API with a
// database), so a plugin with its default protocols on a gRPC-only route is
// accepted: held here so that a change in Kong is seen. `kong config
// parse` refuses and accepts the same, once Kong/kong#7583 (it fails on any
// external plugin in 3.9.3) is worked around as realkong.ConfigParse does.
func TestKongConventionsThroughKong(t *testing.T) {
	kong := realkong.Require(t)
	plugins := []string{"jwt-claims", "subscription-owner", "payment-token", "user-context", "subgate"}
	e := startEdge(t, stack.EdgeOptions{Plugins: plugins, KongYML: []byte("_format_version: \"3.0\"\n"), Kong: kong})
	withPlugins := func(protocols string, routeProtocols string, names ...string) []byte {
		y := "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://127.0.0.1:9\n    routes:\n"
		for _, n := range names {
			y += fmt.Sprintf("      - {name: r-%s, paths: [/%s], protocols: %s, plugins: [{name: %s, protocols: %s, config: {}}]}\n", n, n, routeProtocols, n, protocols)
		}
		return []byte(y)
	}
	err := e.Kong.PostConfig(withPlugins("[grpc]", "[http, grpc]", plugins...))
	if err == nil || strings.Count(err.Error(), `"protocols":["expected one of: http, https"]`) != len(plugins) {
		t.Errorf("plugins on gRPC: %v", err)
	}
	jwt := strings.ReplaceAll(string(withPlugins("[https]", "[https]", "jwt-claims")), "config: {}", "config: "+jwtConfig(""))
	if err := e.Kong.PostConfig([]byte(jwt)); err != nil {
		t.Errorf("jwt-claims on https: %v", err)
	}
	grpcRoute := strings.ReplaceAll(string(withPlugins("[http, https]", "[grpc]", "jwt-claims")), "config: {}", "config: "+jwtConfig(""))
	grpcRoute = strings.Replace(grpcRoute, "protocols: [http, https], ", "", 1)
	if err := e.Kong.PostConfig([]byte(grpcRoute)); err != nil {
		t.Errorf("Kong %s now refuses a plugin with its default protocols on a gRPC route (update the README): %v", kong, err)
	}
	// kong config parse (with Kong/kong#7583 worked around, realkong.ConfigParse)
	// refuses the same and accepts the same.
	if err := realkong.ConfigParse(kong, e.Deployment.Env, withPlugins("[grpc]", "[http, grpc]", plugins...)); err == nil || !strings.Contains(err.Error(), "expected one of: http, https") {
		t.Errorf("kong config parse, plugins on gRPC: %v", err)
	}
	if err := realkong.ConfigParse(kong, e.Deployment.Env, []byte(jwt)); err != nil {
		t.Errorf("kong config parse, jwt-claims on https: %v", err)
	}
}

// Where each plugin runs among Kong's bundled ones, as the running Kong
// reports every plugin's PRIORITY (Admin API GET /: plugins.
// available_on_server): before rate-limiting, response-ratelimiting and acl
// (so they see the consumer subgate authenticates) and request-transformer
// (which then cannot change what subgate verified, but can overwrite what
// it set upstream), after cors (which answers preflights first). The
// README's table is this.
func TestPrioritiesAmongKongsPlugins(t *testing.T) {
	kong := realkong.Require(t)
	ours := map[string]int{"jwt-claims": kongx.PriorityJWTClaims, "subscription-owner": kongx.PrioritySubscriptionOwner,
		"payment-token": kongx.PriorityPaymentToken, "user-context": kongx.PriorityUserContext, "subgate": kongx.PrioritySubgate}
	names := make([]string, 0, len(ours))
	for n := range ours {
		names = append(names, n)
	}
	e := startEdge(t, stack.EdgeOptions{Plugins: names, KongYML: []byte("_format_version: \"3.0\"\n"), Kong: kong})
	resp, err := http.Get(e.AdminURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var root struct {
		Plugins struct {
			Available map[string]struct{ Priority int } `json:"available_on_server"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&root); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /: %d %v", resp.StatusCode, err)
	}
	prio := func(n string) int {
		p, ok := root.Plugins.Available[n]
		if !ok {
			t.Fatalf("Kong has no plugin %s", n)
		}
		return p.Priority
	}
	before := []string{"cors"}
	after := []string{"acl", "rate-limiting", "response-ratelimiting", "request-transformer"}
	for n, want := range ours {
		if got := prio(n); got != want {
			t.Errorf("%s: Kong has priority %d, the code %d", n, got, want)
		}
		for _, b := range before {
			if prio(b) <= want {
				t.Errorf("%s (%d) no longer runs before %s (%d)", b, prio(b), n, want)
			}
		}
		for _, a := range after {
			if prio(a) >= want {
				t.Errorf("%s (%d) no longer runs after %s (%d)", a, prio(a), n, want)
			}
		}
	}
	note := map[string]string{
		"cors":                  "answers preflights (unless `preflight_continue`); adds its headers to subgate's denials too",
		"jwt":                   "Kong's own JWT plugin",
		"key-auth":              "same priority as subscription-owner: their order is not defined",
		"acl":                   "allows and denies by the consumer subgate authenticated",
		"rate-limiting":         "`limit_by: consumer` / `credential` count what subgate authenticated",
		"response-ratelimiting": "likewise",
		"request-transformer":   "runs after every subgate plugin: it cannot change what subgate verified, but it can overwrite an upstream header subgate set",
		"file-log":              "log phase: its entry names subgate's consumer and decisions",
	}
	for n := range ours {
		note[n] = "subgate"
	}
	var rows []string
	for n := range note {
		rows = append(rows, n)
	}
	slices.SortFunc(rows, func(a, b string) int { return cmp.Or(prio(b)-prio(a), strings.Compare(a, b)) })
	var b strings.Builder
	b.WriteString("| plugin | priority | |\n| --- | --- | --- |\n")
	for _, n := range rows {
		name, what := "`"+n+"`", note[n]
		if what == "subgate" {
			name, what = "**"+name+"**", ""
		}
		fmt.Fprintf(&b, "| %s | %d | %s |\n", name, prio(n), what)
	}
	docblock.Check(t, "../README.md", "priorities", b.String())
}

// The metrics tell a plugin's routes apart by the metadata Kong adds to
// each plugin config: the plugin's instance_name where the operator gave
// one, else Kong's route id (no PDK call; the allow path stays 3 calls).
func TestMetricsByRouteThroughKong(t *testing.T) {
	kong := realkong.Require(t)
	o := observeEchoOn(t, kong, fmt.Sprintf(`
      - name: named
        paths: [/named]
        plugins:
          - {name: jwt-claims, instance_name: paid-api, config: %[1]s}
      - name: plain
        paths: [/plain]
        plugins:
          - {name: jwt-claims, config: %[1]s}`, jwtConfig("")), "jwt-claims")
	url := o.URL(t)
	for _, p := range []string{"/named", "/named", "/plain"} {
		if status, _, body := send(t, url, "GET", p, bearerOf(t, alice)); status != 200 {
			t.Fatalf("%s: %d %s", p, status, body)
		}
	}
	send(t, url, "GET", "/plain", nil)
	_, _, route := send(t, o.e.AdminURL, "GET", "/routes/plain", nil)
	var plain struct{ ID string }
	if err := json.Unmarshal(route, &plain); err != nil || plain.ID == "" {
		t.Fatalf("GET /routes/plain: %s", route)
	}
	_, _, page := send(t, "http://"+o.e.Deployment.Metrics["jwt-claims"], "GET", "/metrics", nil)
	for _, want := range []string{
		`subgate_decisions_total{code="",decision="allow",plugin="jwt-claims",route="paid-api"} 2`,
		fmt.Sprintf(`subgate_decisions_total{code="",decision="allow",plugin="jwt-claims",route=%q} 1`, plain.ID),
		fmt.Sprintf(`subgate_decisions_total{code="token_missing",decision="deny",plugin="jwt-claims",route=%q} 1`, plain.ID),
		`subgate_decision_seconds_count{plugin="jwt-claims",route="paid-api"} 2`,
	} {
		if !strings.Contains(string(page), want) {
			t.Errorf("no %s in:\n%s", want, grepLines(string(page), "subgate_decisions_total"))
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
