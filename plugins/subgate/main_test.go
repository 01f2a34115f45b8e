package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"github.com/Kong/go-pdk/test"
	"github.com/alicebob/miniredis/v2"
	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/chain"
	"github.com/subgate/subgate/pkg/check"
	"github.com/subgate/subgate/pkg/docblock"
	"github.com/subgate/subgate/pkg/kongx"
	"github.com/subgate/subgate/pkg/kongx/kongxtest"
	"github.com/subgate/subgate/pkg/ownership"
)

// instance is the plugin instance go-pdk runs for one route.
type instance = kongx.Instance[chain.Config, *chain.Decider]

const (
	alice = "7d3e2a10-1c4b-4a5e-9f00-3c2b1a000001"
	bob   = "7d3e2a10-1c4b-4a5e-9f00-3c2b1a000002"
)

var ecKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

func TestMain(m *testing.M) {
	kongx.SetOutput(io.Discard)
	m.Run()
}

func jwtSection(extra map[string]any) map[string]any {
	der, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	m := map[string]any{"keys": []map[string]any{{"kid": "k1", "algorithm": "ES256",
		"public_key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}}}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func token(t testing.TB, customer string) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"sub": customer, "country": "DE",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix()})
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// identity answers the X-Customer-Id it receives as the user id, and
// records the headers of each request.
func identity(t testing.TB) (*httptest.Server, func() http.Header) {
	var mu sync.Mutex
	var last http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		last = r.Header.Clone()
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"user_id":%q,"plan":"premium"}`, r.Header.Get("X-Customer-Id"))
	}))
	t.Cleanup(srv.Close)
	return srv, func() http.Header { mu.Lock(); defer mu.Unlock(); return last }
}

func run(t *testing.T, c *instance, path string, h http.Header) *test.TestEnv {
	t.Helper()
	env := kongxtest.Request(t, path, h)
	kongxtest.Do(env, c)
	return env
}

func TestSchemaSectionsOptionalButJWT(t *testing.T) {
	b, _ := json.Marshal(kongx.PluginSchema(plugin.Name, chain.Config{}))
	for _, want := range []string{`"jwt":{"description"`, `"required":true,"type":"record"}}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("schema lacks %s", want)
		}
	}
	if n := strings.Count(string(b), `"required":false,"type":"record"`); n != 5 {
		t.Errorf("%d optional records, want 5 (ownership, payment, identity, and identity's events and shared_cache)", n)
	}
}

// Each later section reads the headers the chain's plugin would read: jwt's
// upstream headers set, its hidden credential gone.
func TestJWTThenIdentitySeesTheChainsHeaders(t *testing.T) {
	srv, last := identity(t)
	c := kongxtest.Config(t, plugin, map[string]any{
		"jwt": jwtSection(map[string]any{"hide_credentials": true}),
		"identity": map[string]any{"identity_url": srv.URL, "forward_headers": []string{"Authorization", "X-Customer-Id"},
			"field_headers": map[string]string{"plan": "X-Plan"}},
	})
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
	if c.Decider().Reads()&check.Path != 0 {
		t.Fatal("no ownership section: the path is not read")
	}
	h := http.Header{"Authorization": {"Bearer " + token(t, alice)}, "X-Customer-Id": {bob}, "X-Plan": {"gold"}, "X-User-Context-Source": {"cache"}}
	env := run(t, c, "/coach", h)
	if env.ClientRes.Status != 200 {
		t.Fatalf("%d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	if got := last(); got.Get("Authorization") != "" || got.Get("X-Customer-Id") != alice {
		t.Fatalf("identity received %v: want jwt's X-Customer-Id and no hidden credential, as after jwt-claims in the chain", got)
	}
	up := env.ServiceReq.Headers
	if up.Get("X-Customer-Id") != alice || up.Get("X-Country") != "DE" || up.Get("X-Plan") != "premium" ||
		up.Get("X-User-Context-Source") != "identity" || up.Get("Authorization") != "" {
		t.Fatalf("upstream headers %v", up)
	}
	if len(env.Ctx.Store) != 0 {
		t.Fatalf("subgate wrote kong.ctx.shared: %v", env.Ctx.Store)
	}
	env = run(t, c, "/coach", http.Header{"X-Customer-Id": {alice}})
	if env.ClientRes.Status != 401 || kongxtest.Code(t, env) != "token_missing" {
		t.Fatalf("no token: %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
}

// alicesRedis is a Redis where alice owns subscription DE:1234.
func alicesRedis(t testing.TB) *miniredis.Miniredis {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	u, _ := ownership.ParseUUID(alice)
	if err := ownership.NewStore(rdb, "").Put(context.Background(), "DE", 1234, u); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestOwnershipSection(t *testing.T) {
	m := alicesRedis(t)
	c := kongxtest.Config(t, plugin, map[string]any{
		"jwt":       jwtSection(nil),
		"ownership": map[string]any{"redis": map[string]any{"addresses": []string{m.Addr()}}, "verified_header": "X-Subscription-Verified"},
	})
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Authorization": {"Bearer " + token(t, alice)}, "X-Subscription-Verified": {"FR:5678"}}
	env := run(t, c, "/subscriptions/1234", h)
	if env.ClientRes.Status != 200 || env.ServiceReq.Headers.Get("X-Subscription-Verified") != "DE:1234" {
		t.Fatalf("%d %s %v", env.ClientRes.Status, env.ClientRes.Body, env.ServiceReq.Headers)
	}
	if env = run(t, c, "/subscriptions/5678", h); env.ClientRes.Status != 403 || kongxtest.Code(t, env) != "subscription_forbidden" {
		t.Fatalf("foreign: %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
}

func TestMisconfiguredSections(t *testing.T) {
	for name, set := range map[string]map[string]any{
		"no jwt key":                {},
		"identity no url":           {"jwt": jwtSection(nil), "identity": map[string]any{"method": "GET"}},
		"ownership no rdb":          {"jwt": jwtSection(nil), "ownership": map[string]any{"path_patterns": []string{"/s/{subscription_id}"}}},
		"a section's log_decisions": {"jwt": jwtSection(map[string]any{"log_decisions": "all"})},
	} {
		c := kongxtest.Config(t, plugin, set)
		if c.Err() == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		env := run(t, c, "/x", http.Header{"Authorization": {"Bearer " + token(t, alice)}})
		if env.ClientRes.Status != 500 || kongxtest.Code(t, env) != "plugin_misconfigured" {
			t.Errorf("%s: %d %s", name, env.ClientRes.Status, env.ClientRes.Body)
		}
	}
}

// README.md's PDK-call table, counted through the Kong adapter.
func TestReadmePDKCalls(t *testing.T) {
	m := alicesRedis(t)
	srv, _ := identity(t)
	jwtOnly := kongxtest.Config(t, plugin, map[string]any{"jwt": jwtSection(nil)})
	every := kongxtest.Config(t, plugin, map[string]any{"jwt": jwtSection(nil),
		"ownership": map[string]any{"redis": map[string]any{"addresses": []string{m.Addr()}}},
		"identity":  map[string]any{"identity_url": srv.URL, "forward_headers": []string{"Authorization", "X-Customer-Id"}}})
	tok := http.Header{"Authorization": {"Bearer " + token(t, alice)}}
	mapped := kongxtest.Config(t, plugin, map[string]any{"jwt": jwtSection(map[string]any{"credential_claim": "sub", "consumer_claim": "sub"}),
		"ownership": map[string]any{"redis": map[string]any{"addresses": []string{m.Addr()}}},
		"identity":  map[string]any{"identity_url": srv.URL, "forward_headers": []string{"Authorization", "X-Customer-Id"}}})
	withConsumer := func() *test.TestEnv {
		env := kongxtest.Request(t, "/subscriptions/1234", tok)
		kongxtest.Consumers(env, &pb.Consumer{Id: "0b9e3a77-5d1c-4f7e-8a6b-000000000a11", Username: alice})
		return env
	}
	docblock.Check(t, "README.md", "pdk", kongxtest.CallsTable(t,
		kongxtest.Case{Name: "allowed, `jwt` only", Instance: jwtOnly, Env: kongxtest.Request(t, "/coach", tok), Status: 200},
		kongxtest.Case{Name: "allowed, `jwt`, `ownership` and `identity`", Instance: every, Env: kongxtest.Request(t, "/subscriptions/1234", tok), Status: 200},
		kongxtest.Case{Name: "the same, with `jwt.credential_claim` and `jwt.consumer_claim`: the consumer's first request", Instance: mapped, Env: withConsumer(), Status: 200},
		kongxtest.Case{Name: "the same: consumer cached", Instance: mapped, Env: withConsumer(), Status: 200},
		kongxtest.Case{Name: "denied, `jwt` only: no token (401 `token_missing`)", Instance: jwtOnly, Env: kongxtest.Request(t, "/coach", nil), Status: 401},
		kongxtest.Case{Name: "denied: another's subscription (403 `subscription_forbidden`)", Instance: every, Env: kongxtest.Request(t, "/subscriptions/5678", tok), Status: 403},
	))
}
