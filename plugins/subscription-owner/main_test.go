package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/Kong/go-pdk/test"
	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/claims"
	"github.com/subgate/subgate/pkg/docblock"
	"github.com/subgate/subgate/pkg/kongx"
	"github.com/subgate/subgate/pkg/kongx/kongxtest"
	"github.com/subgate/subgate/pkg/ownership"
	"github.com/subgate/subgate/pkg/redistest"
)

// instance is the plugin instance go-pdk runs for one route.
type instance = kongx.Instance[ownership.Config, *ownership.Decider]

const (
	alice = "7d3e2a10-1c4b-4a5e-9f00-3c2b1a000001"
	bob   = "7d3e2a10-1c4b-4a5e-9f00-3c2b1a000002"
)

func TestMain(m *testing.M) {
	kongx.SetOutput(io.Discard)
	m.Run()
}

func kongConfig(t *testing.T, set map[string]any) *instance {
	return kongxtest.Config(t, plugin, set)
}

func seed(t *testing.T, addr, country string, id int64, customer string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	u, _ := ownership.ParseUUID(customer)
	if err := ownership.NewStore(rdb, "").Put(context.Background(), country, id, u); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, c *instance, path string, v *claims.Verified, h http.Header) *test.TestEnv {
	t.Helper()
	env := kongxtest.Request(t, path, h)
	if v != nil {
		s, _ := claims.Encode(v)
		env.Ctx.Store[claims.SharedKey] = s
	}
	kongxtest.Do(env, c)
	return env
}

func redisCfg(addr string) map[string]any {
	return map[string]any{"addresses": []string{addr}, "read_timeout_ms": 100, "dial_timeout_ms": 100}
}

func TestPlugin(t *testing.T) {
	m := miniredis.RunT(t)
	seed(t, m.Addr(), "DE", 1234, alice)
	c := kongConfig(t, map[string]any{"redis": redisCfg(m.Addr()), "path_patterns": []string{"/subscriptions/{subscription_id}/deliveries"}})
	alicev := &claims.Verified{CustomerID: alice, Country: "DE"}
	bobv := &claims.Verified{CustomerID: bob, Country: "DE"}

	if env := run(t, c, "/subscriptions/1234/deliveries", alicev, nil); env.ClientRes.Status != 200 {
		t.Fatalf("owner: %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	foreign := run(t, c, "/subscriptions/1234/deliveries", bobv, nil)
	unknown := run(t, c, "/subscriptions/4321/deliveries", bobv, nil)
	for _, env := range []*test.TestEnv{foreign, unknown} {
		if env.ClientRes.Status != 403 || kongxtest.Code(t, env) != "subscription_forbidden" {
			t.Fatalf("got %d %s", env.ClientRes.Status, env.ClientRes.Body)
		}
	}
	strip := func(b []byte) string {
		var m map[string]string
		_ = json.Unmarshal(b, &m)
		delete(m, "request_id")
		s, _ := json.Marshal(m)
		return string(s)
	}
	if strip(foreign.ClientRes.Body) != strip(unknown.ClientRes.Body) {
		t.Fatal("foreign and unknown subscriptions read differently")
	}
	if env := run(t, c, "/subscriptions/01234/deliveries", alicev, nil); env.ClientRes.Status != 400 || kongxtest.Code(t, env) != "subscription_id_invalid" {
		t.Fatalf("odd path: %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	// No jwt-claims before us: 401, whatever the client's headers claim.
	spoof := http.Header{"X-Customer-Id": {alice}, "X-Country": {"DE"}}
	if env := run(t, c, "/subscriptions/1234/deliveries", nil, spoof); env.ClientRes.Status != 401 || kongxtest.Code(t, env) != "claims_missing" {
		t.Fatalf("no claims: %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	m.Close()
	env := run(t, c, "/subscriptions/1234/deliveries", alicev, nil)
	if env.ClientRes.Status != 503 || kongxtest.Code(t, env) != "ownership_unavailable" || env.ClientRes.Headers.Get("Retry-After") != "1" {
		t.Fatalf("redis down: %d %s %v", env.ClientRes.Status, env.ClientRes.Body, env.ClientRes.Headers)
	}
}

func TestVerifiedHeaderIsOwned(t *testing.T) {
	m := miniredis.RunT(t)
	seed(t, m.Addr(), "DE", 55, alice)
	c := kongConfig(t, map[string]any{"redis": redisCfg(m.Addr()), "verified_header": "X-Subscription-Verified"})
	env := run(t, c, "/subscriptions/55", &claims.Verified{CustomerID: alice, Country: "DE"}, http.Header{"X-Subscription-Verified": {"DE:99"}})
	if got := env.ServiceReq.Headers.Values("X-Subscription-Verified"); len(got) != 1 || got[0] != "DE:55" {
		t.Fatalf("verified header %v", got)
	}
}

func TestMisconfigured(t *testing.T) {
	for name, set := range map[string]map[string]any{
		"no redis":       {},
		"bad pattern":    {"redis": redisCfg("127.0.0.1:1"), "path_patterns": []string{"/x/{id}"}},
		"missing pw env": {"redis": map[string]any{"addresses": []string{"127.0.0.1:1"}, "password_env": "SUBGATE_UNSET_PW"}},
		"bad source":     {"redis": redisCfg("127.0.0.1:1"), "country_source": "header"},
	} {
		t.Run(name, func(t *testing.T) {
			env := run(t, kongConfig(t, set), "/subscriptions/1", &claims.Verified{CustomerID: alice, Country: "DE"}, nil)
			if env.ClientRes.Status != 500 || kongxtest.Code(t, env) != "plugin_misconfigured" {
				t.Fatalf("got %d %s", env.ClientRes.Status, env.ClientRes.Body)
			}
		})
	}
}

// TestRealRedis runs the plugin against a real redis-server, then kills it.
func TestRealRedis(t *testing.T) {
	srv := redistest.Start(t)
	seed(t, srv.Addr, "DE", 1234, alice)
	c := kongConfig(t, map[string]any{"redis": redisCfg(srv.Addr)})
	alicev := &claims.Verified{CustomerID: alice, Country: "DE"}
	if env := run(t, c, "/subscriptions/1234", alicev, nil); env.ClientRes.Status != 200 {
		t.Fatalf("owner: %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	if env := run(t, c, "/subscriptions/1234", &claims.Verified{CustomerID: bob, Country: "DE"}, nil); env.ClientRes.Status != 403 {
		t.Fatalf("foreign: %d", env.ClientRes.Status)
	}
	srv.Stop()
	env := run(t, c, "/subscriptions/1234", alicev, nil)
	if env.ClientRes.Status != 503 || !strings.Contains(string(env.ClientRes.Body), "ownership_unavailable") {
		t.Fatalf("redis killed: %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	srv.Restart(t) // persistence is off: the pair is gone, and a missing pair is never an allow
	if env := run(t, c, "/subscriptions/1234", alicev, nil); env.ClientRes.Status != 403 {
		t.Fatalf("after restart without data: %d", env.ClientRes.Status)
	}
}

// README.md's PDK-call table, counted through the Kong adapter.
func TestReadmePDKCalls(t *testing.T) {
	m := miniredis.RunT(t)
	seed(t, m.Addr(), "DE", 1234, alice)
	c := kongConfig(t, map[string]any{"redis": redisCfg(m.Addr())})
	verified := kongConfig(t, map[string]any{"redis": redisCfg(m.Addr()), "verified_header": "X-Subscription-Verified"})
	req := func(path, customer string) *test.TestEnv {
		env := kongxtest.Request(t, path, nil)
		s, _ := claims.Encode(&claims.Verified{CustomerID: customer, Country: "DE"})
		env.Ctx.Store[claims.SharedKey] = s
		return env
	}
	docblock.Check(t, "README.md", "pdk", kongxtest.CallsTable(t,
		kongxtest.Case{Name: "allowed", Instance: c, Env: req("/subscriptions/1234", alice), Status: 200},
		kongxtest.Case{Name: "allowed, with `verified_header`", Instance: verified, Env: req("/subscriptions/1234", alice), Status: 200},
		kongxtest.Case{Name: "denied: another's subscription (403 `subscription_forbidden`)", Instance: c, Env: req("/subscriptions/1234", bob), Status: 403},
	))
}
