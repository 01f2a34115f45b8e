package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Kong/go-pdk/test"
	"github.com/golang-jwt/jwt/v5"

	"github.com/subgate/subgate/pkg/claims"
	"github.com/subgate/subgate/pkg/docblock"
	"github.com/subgate/subgate/pkg/jwtclaims"
	"github.com/subgate/subgate/pkg/kongx"
	"github.com/subgate/subgate/pkg/kongx/kongxtest"
)

// instance is the plugin instance go-pdk runs for one route.
type instance = kongx.Instance[jwtclaims.Config, *jwtclaims.Decider]

var (
	ecKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
)

func pubPEM(pub any) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func kongConfig(t *testing.T, set map[string]any) *instance {
	return kongxtest.Config(t, plugin, set)
}

func esKeys() map[string]any {
	return map[string]any{"keys": []map[string]any{{"kid": "k1", "algorithm": "ES256", "public_key": pubPEM(&ecKey.PublicKey)}}}
}

func withKeys(extra map[string]any) map[string]any {
	m := esKeys()
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func goodClaims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"sub": "7d3e2a10-1c4b-4a5e-9f00-3c2b1a000001", "country": "DE", "iss": "https://id.example",
		"aud": "subgate", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "plan": "premium"}
}

// run sends one request through the plugin as Kong would and returns the
// test environment for assertions.
func run(t *testing.T, c *instance, headers http.Header) *test.TestEnv {
	t.Helper()
	env := kongxtest.Request(t, "/subscriptions/1/deliveries", headers)
	kongxtest.Do(env, c)
	return env
}

type errBody struct {
	Code, Message, RequestID string
}

// challenge is how a 401's WWW-Authenticate starts: without a token the
// client learns only the scheme and realm (RFC 6750 3.1).
func challenge(code string) string {
	if code == "token_missing" {
		return `Bearer realm="subgate"`
	}
	return `Bearer error="invalid_token"`
}

func denied(t *testing.T, env *test.TestEnv, status int, code string) errBody {
	t.Helper()
	if env.ClientRes.Status != status {
		t.Fatalf("status = %d, want %d (body %s)", env.ClientRes.Status, status, env.ClientRes.Body)
	}
	var b struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal(env.ClientRes.Body, &b); err != nil {
		t.Fatalf("body is not JSON: %q", env.ClientRes.Body)
	}
	if b.Code != code {
		t.Fatalf("code = %q, want %q (%s)", b.Code, code, b.Message)
	}
	if len(b.RequestID) != 32 {
		t.Fatalf("request_id %q", b.RequestID)
	}
	if status == 401 && !strings.HasPrefix(env.ClientRes.Headers.Get("WWW-Authenticate"), challenge(code)) {
		t.Fatalf("401 without WWW-Authenticate: %v", env.ClientRes.Headers)
	}
	if _, stored := env.Ctx.Store[claims.SharedKey]; stored {
		t.Fatal("claims stored on a denied request")
	}
	return errBody{b.Code, b.Message, b.RequestID}
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func TestAllowStoresClaimsAndOwnsUpstreamHeaders(t *testing.T) {
	c := kongConfig(t, withKeys(map[string]any{"issuers": []string{"https://id.example"}, "audiences": []string{"subgate"}}))
	h := bearer(sign(t, jwt.SigningMethodES256, ecKey, "k1", goodClaims()))
	h.Set("X-Customer-Id", "spoofed-customer")
	h.Set("X-Country", "FR")
	env := run(t, c, h)
	if env.ClientRes.Status != 200 {
		t.Fatalf("status %d: %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	if got := env.ServiceReq.Headers.Values("X-Customer-Id"); len(got) != 1 || got[0] != "7d3e2a10-1c4b-4a5e-9f00-3c2b1a000001" {
		t.Fatalf("upstream X-Customer-Id = %v", got)
	}
	if got := env.ServiceReq.Headers.Values("X-Country"); len(got) != 1 || got[0] != "DE" {
		t.Fatalf("upstream X-Country = %v", got)
	}
	raw, _ := env.Ctx.Store[claims.SharedKey].(string)
	v, err := claims.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	if v.CustomerID != "7d3e2a10-1c4b-4a5e-9f00-3c2b1a000001" || v.Country != "DE" || v.Claims["plan"] != "premium" {
		t.Fatalf("shared claims %+v", v)
	}
}

func TestSpoofedHeaderRemovedWhenClaimAbsent(t *testing.T) {
	c := kongConfig(t, esKeys())
	cl := goodClaims()
	delete(cl, "country")
	h := bearer(sign(t, jwt.SigningMethodES256, ecKey, "k1", cl))
	h.Set("X-Country", "FR")
	env := run(t, c, h)
	if env.ClientRes.Status != 200 {
		t.Fatalf("status %d", env.ClientRes.Status)
	}
	if got := env.ServiceReq.Headers.Values("X-Country"); len(got) != 0 {
		t.Fatalf("client's X-Country reached the upstream: %v", got)
	}
}

func TestCustomUpstreamHeadersAndClaimNames(t *testing.T) {
	c := kongConfig(t, withKeys(map[string]any{"customer_id_claim": "cid", "upstream_headers": map[string]string{"X-Plan": "plan", "X-Cust": "cid"}, "hide_credentials": true}))
	cl := goodClaims()
	cl["cid"] = "cust-42"
	h := bearer(sign(t, jwt.SigningMethodES256, ecKey, "k1", cl))
	h.Set("X-Customer-Id", "not-owned-here")
	env := run(t, c, h)
	if env.ClientRes.Status != 200 {
		t.Fatalf("status %d: %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	if env.ServiceReq.Headers.Get("X-Plan") != "premium" || env.ServiceReq.Headers.Get("X-Cust") != "cust-42" {
		t.Fatalf("upstream headers %v", env.ServiceReq.Headers)
	}
	if env.ServiceReq.Headers.Get("Authorization") != "" {
		t.Fatal("hide_credentials left the token upstream")
	}
	// A header the route does not own is left alone (it is not ours to strip).
	if env.ServiceReq.Headers.Get("X-Customer-Id") != "not-owned-here" {
		t.Fatal("a header this route does not own was changed")
	}
}

func TestDenials(t *testing.T) {
	c := kongConfig(t, withKeys(map[string]any{"issuers": []string{"https://id.example"}, "audiences": []string{"subgate"}, "leeway_seconds": 30, "max_token_bytes": 2048}))
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mod := func(f func(jwt.MapClaims)) jwt.MapClaims { c := goodClaims(); f(c); return c }
	es := func(cl jwt.MapClaims) string { return sign(t, jwt.SigningMethodES256, ecKey, "k1", cl) }
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "k1", goodClaims())
	confused := sign(t, jwt.SigningMethodHS256, []byte(pubPEM(&ecKey.PublicKey)), "k1", goodClaims())
	now := time.Now()
	tests := []struct {
		name   string
		header http.Header
		status int
		code   string
	}{
		{"no header", http.Header{}, 401, "token_missing"},
		{"basic scheme", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, 401, "token_missing"},
		{"empty bearer", http.Header{"Authorization": {"Bearer "}}, 401, "token_missing"},
		{"garbage", bearer("not-a-jwt"), 401, "token_malformed"},
		{"too large", bearer(strings.Repeat("a", 3000)), 401, "token_too_large"},
		{"alg none", bearer(none), 401, "token_invalid_signature"},
		{"algorithm confusion", bearer(confused), 401, "token_invalid_signature"},
		{"wrong key", bearer(sign(t, jwt.SigningMethodES256, other, "k1", goodClaims())), 401, "token_invalid_signature"},
		{"unknown kid", bearer(sign(t, jwt.SigningMethodES256, ecKey, "k9", goodClaims())), 401, "token_unknown_key"},
		{"expired beyond leeway", bearer(es(mod(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() }))), 401, "token_expired"},
		{"not yet valid", bearer(es(mod(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }))), 401, "token_not_yet_valid"},
		{"issuer", bearer(es(mod(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }))), 401, "token_issuer_invalid"},
		{"audience", bearer(es(mod(func(c jwt.MapClaims) { c["aud"] = "other" }))), 401, "token_audience_invalid"},
		{"no customer id", bearer(es(mod(func(c jwt.MapClaims) { delete(c, "sub") }))), 401, "token_claim_missing"},
		{"customer id not a string", bearer(es(mod(func(c jwt.MapClaims) { c["sub"] = []string{"a"} }))), 401, "token_malformed"},
		{"customer id with CRLF", bearer(es(mod(func(c jwt.MapClaims) { c["sub"] = "a\r\nX-Admin: 1" }))), 401, "token_claim_missing"},
		{"no exp", bearer(es(mod(func(c jwt.MapClaims) { delete(c, "exp") }))), 401, "token_claim_missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.header.Set("X-Customer-Id", "spoofed")
			env := run(t, c, tt.header)
			denied(t, env, tt.status, tt.code)
		})
	}
}

func TestExpiredWithinLeewayPasses(t *testing.T) {
	c := kongConfig(t, withKeys(map[string]any{"leeway_seconds": 30}))
	cl := goodClaims()
	cl["exp"] = time.Now().Add(-10 * time.Second).Unix()
	env := run(t, c, bearer(sign(t, jwt.SigningMethodES256, ecKey, "k1", cl)))
	if env.ClientRes.Status != 200 {
		t.Fatalf("status %d: %s", env.ClientRes.Status, env.ClientRes.Body)
	}
}

func TestTokenFromCookie(t *testing.T) {
	c := kongConfig(t, withKeys(map[string]any{"token_cookie": "session"}))
	tok := sign(t, jwt.SigningMethodES256, ecKey, "k1", goodClaims())
	env := run(t, c, http.Header{"Cookie": {"theme=dark; session=" + tok}})
	if env.ClientRes.Status != 200 {
		t.Fatalf("cookie token refused: %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	env = run(t, c, http.Header{"Cookie": {"theme=dark"}})
	denied(t, env, 401, "token_missing")
}

func TestCustomTokenHeaderAcceptsBareToken(t *testing.T) {
	c := kongConfig(t, withKeys(map[string]any{"token_header": "X-Access-Token"}))
	tok := sign(t, jwt.SigningMethodES256, ecKey, "k1", goodClaims())
	if env := run(t, c, http.Header{"X-Access-Token": {tok}}); env.ClientRes.Status != 200 {
		t.Fatalf("bare token refused: %s", env.ClientRes.Body)
	}
	// The Authorization header is not a source on this route.
	denied(t, run(t, c, bearer(tok)), 401, "token_missing")
}

func TestHMACKeyFromEnvironment(t *testing.T) {
	secret := strings.Repeat("k", 32)
	t.Setenv("JWT_TEST_SECRET", secret)
	c := kongConfig(t, map[string]any{"keys": []map[string]any{{"kid": "h1", "algorithm": "HS256", "secret_env": "JWT_TEST_SECRET"}}})
	if env := run(t, c, bearer(sign(t, jwt.SigningMethodHS256, []byte(secret), "h1", goodClaims()))); env.ClientRes.Status != 200 {
		t.Fatalf("HS256 refused: %s", env.ClientRes.Body)
	}
	denied(t, run(t, c, bearer(sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 32)), "h1", goodClaims()))), 401, "token_invalid_signature")
}

func TestJWKSUnreachableIs503(t *testing.T) {
	c := kongConfig(t, map[string]any{"jwks_url": "http://127.0.0.1:1/jwks.json", "jwks_timeout_ms": 200})
	env := run(t, c, bearer(sign(t, jwt.SigningMethodES256, ecKey, "k1", goodClaims())))
	denied(t, env, 503, "keys_unavailable")
	if env.ClientRes.Headers.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
}

func TestMisconfigurationDeniesEveryRequest(t *testing.T) {
	tests := map[string]map[string]any{
		"unparsable PEM":  {"keys": []map[string]any{{"kid": "k1", "algorithm": "ES256", "public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}}},
		"unknown alg":     {"keys": []map[string]any{{"kid": "k1", "algorithm": "XS256", "public_key": pubPEM(&ecKey.PublicKey)}}},
		"missing env var": {"keys": []map[string]any{{"kid": "k1", "algorithm": "HS256", "secret_env": "SUBGATE_DEFINITELY_UNSET"}}},
		"no keys":         {},
		"bad header name": withKeys(map[string]any{"upstream_headers": map[string]string{"X Bad": "sub"}}),
	}
	for name, set := range tests {
		t.Run(name, func(t *testing.T) {
			var logs bytes.Buffer
			kongx.SetOutput(&logs)
			defer kongx.SetOutput(io.Discard)
			c := kongConfig(t, set)
			if c.Err() == nil {
				t.Fatal("bad config accepted")
			}
			if !strings.Contains(logs.String(), "plugin misconfigured") {
				t.Fatalf("no misconfiguration log at instance start: %s", logs.String())
			}
			for range 2 {
				env := run(t, c, bearer(sign(t, jwt.SigningMethodES256, ecKey, "k1", goodClaims())))
				denied(t, env, 500, "plugin_misconfigured")
			}
		})
	}
}

func TestNullFieldsKeepDefaults(t *testing.T) {
	c := kongConfig(t, esKeys())
	if cfg := c.Config(); cfg.TokenHeader != "Authorization" || cfg.CustomerIDClaim != "sub" || cfg.LeewaySeconds != 30 || cfg.CacheSize != 10000 {
		t.Fatalf("defaults lost to nulls: %+v", cfg)
	}
}

func TestRepeatedTokenIsServedCached(t *testing.T) {
	c := kongConfig(t, esKeys())
	tok := sign(t, jwt.SigningMethodES256, ecKey, "k1", goodClaims())
	run(t, c, bearer(tok))
	var logs bytes.Buffer
	kongx.SetOutput(&logs)
	defer kongx.SetOutput(io.Discard)
	if env := run(t, c, bearer(tok)); env.ClientRes.Status != 200 {
		t.Fatal(env.ClientRes.Status)
	}
	if !strings.Contains(logs.String(), `"cached":true`) {
		t.Fatalf("second use was not a cache hit: %s", logs.String())
	}
}

func TestAuditLogHasDecisionsButNeverTheToken(t *testing.T) {
	var logs bytes.Buffer
	kongx.SetOutput(&logs)
	defer kongx.SetOutput(io.Discard)
	c := kongConfig(t, esKeys())
	tok := sign(t, jwt.SigningMethodES256, ecKey, "k1", goodClaims())
	run(t, c, bearer(tok))
	bad := sign(t, jwt.SigningMethodES256, ecKey, "k9", goodClaims())
	body := denied(t, run(t, c, bearer(bad)), 401, "token_unknown_key")
	out := logs.String()
	for _, secret := range []string{tok, bad, strings.Split(tok, ".")[2], strings.Split(bad, ".")[1]} {
		if strings.Contains(out, secret) {
			t.Fatal("a token (or part of one) reached the log")
		}
	}
	for _, want := range []string{`"decision":"allow"`, `"decision":"deny"`, `"code":"token_unknown_key"`,
		`"customer_id":"7d3e2a10-1c4b-4a5e-9f00-3c2b1a000001"`, `"route_id":"route-under-test"`, fmt.Sprintf(`"request_id":"%s"`, body.RequestID)} {
		if !strings.Contains(out, want) {
			t.Errorf("audit log lacks %s:\n%s", want, out)
		}
	}
}

func TestMain(m *testing.M) {
	kongx.SetOutput(io.Discard)
	m.Run()
}

// TestJWKSRotation: keys come from a JWKS URL; after the issuer rotates to a
// new key, tokens of the new key verify (one refetch on the unknown kid) and
// tokens of the withdrawn key stop verifying, cached or not.
func TestJWKSRotation(t *testing.T) {
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwk := func(kid string, k *ecdsa.PrivateKey) map[string]any {
		b := func(x []byte) string { return base64.RawURLEncoding.EncodeToString(x) }
		return map[string]any{"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": kid,
			"x": b(k.X.FillBytes(make([]byte, 32))), "y": b(k.Y.FillBytes(make([]byte, 32)))}
	}
	var doc atomic.Value
	publish := func(keys ...map[string]any) { b, _ := json.Marshal(map[string]any{"keys": keys}); doc.Store(b) }
	publish(jwk("k1", ecKey))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(doc.Load().([]byte)) }))
	defer srv.Close()
	c := kongConfig(t, map[string]any{"jwks_url": srv.URL, "jwks_min_refetch_seconds": 1})
	old := sign(t, jwt.SigningMethodES256, ecKey, "k1", goodClaims())
	if env := run(t, c, bearer(old)); env.ClientRes.Status != 200 {
		t.Fatalf("k1 before rotation: %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	publish(jwk("k2", k2))
	time.Sleep(1100 * time.Millisecond) // past jwks_min_refetch_seconds
	if env := run(t, c, bearer(sign(t, jwt.SigningMethodES256, k2, "k2", goodClaims()))); env.ClientRes.Status != 200 {
		t.Fatalf("k2 after rotation: %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	denied(t, run(t, c, bearer(old)), 401, "token_unknown_key")
}

// README.md's PDK-call table, counted through the Kong adapter.
func TestReadmePDKCalls(t *testing.T) {
	c := kongConfig(t, esKeys())
	all := kongConfig(t, withKeys(map[string]any{"log_decisions": "all"}))
	tok := bearer(sign(t, jwt.SigningMethodES256, ecKey, "k1", goodClaims()))
	req := func(h http.Header) *test.TestEnv { return kongxtest.Request(t, "/subscriptions/1/deliveries", h) }
	credential := kongConfig(t, withKeys(map[string]any{"credential_claim": "sub"}))
	consumer := kongConfig(t, withKeys(map[string]any{"credential_claim": "sub", "consumer_claim": "sub"}))
	withConsumer := func() *test.TestEnv { env := req(tok); kongxtest.Consumers(env, alicesConsumer); return env }
	preflight := kongConfig(t, withKeys(map[string]any{"run_on_preflight": false}))
	options := req(http.Header{"Origin": {"https://app.example"}, "Access-Control-Request-Method": {"GET"}})
	kongxtest.Method(options, "OPTIONS")
	docblock.Check(t, "README.md", "pdk", kongxtest.CallsTable(t,
		kongxtest.Case{Name: "allowed", Instance: c, Env: req(tok), Status: 200},
		kongxtest.Case{Name: "allowed, `log_decisions: all`", Instance: all, Env: req(tok), Status: 200},
		kongxtest.Case{Name: "allowed, `credential_claim`", Instance: credential, Env: req(tok), Status: 200},
		kongxtest.Case{Name: "allowed, `consumer_claim`: the consumer's first request", Instance: consumer, Env: withConsumer(), Status: 200},
		kongxtest.Case{Name: "allowed, `consumer_claim`: consumer cached", Instance: consumer, Env: withConsumer(), Status: 200},
		kongxtest.Case{Name: "CORS preflight let through (`run_on_preflight: false`)", Instance: preflight, Env: options, Status: 200},
		kongxtest.Case{Name: "denied: no token (401 `token_missing`)", Instance: c, Env: req(nil), Status: 401},
	))
}
