package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/Kong/go-pdk/test"
	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/claims"
	"github.com/subgate/subgate/pkg/docblock"
	"github.com/subgate/subgate/pkg/kongx"
	"github.com/subgate/subgate/pkg/kongx/kongxtest"
	"github.com/subgate/subgate/pkg/payevents"
	"github.com/subgate/subgate/pkg/paytoken"
	"github.com/subgate/subgate/pkg/redistest"
)

// instance is the plugin instance go-pdk runs for one route.
type instance = kongx.Instance[paytoken.Config, *paytoken.Decider]

const (
	alice = "7d3e2a10-1c4b-4a5e-9f00-3c2b1a000001"
	bob   = "7d3e2a10-1c4b-4a5e-9f00-3c2b1a000002"
)

func TestMain(m *testing.M) {
	kongx.SetOutput(io.Discard)
	m.Run()
}

var payKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

func pubPEM() string {
	der, _ := x509.MarshalPKIXPublicKey(&payKey.PublicKey)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func issuer(t *testing.T, at time.Time) *paytoken.Issuer {
	i, err := paytoken.NewIssuer(paytoken.IssuerOptions{Key: payKey, Kid: "pay-1", Issuer: "https://payments.example",
		Audience: "subgate", Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func kongConfig(t *testing.T, redisAddr string, set map[string]any) *instance {
	full := map[string]any{"keys": []map[string]any{{"kid": "pay-1", "algorithm": "ES256", "public_key": pubPEM()}},
		"issuers": []string{"https://payments.example"}, "audiences": []string{"subgate"},
		"required_entitlements": []string{"coach"}, "redis": map[string]any{"addresses": []string{redisAddr}}}
	for k, v := range set {
		full[k] = v
	}
	return kongxtest.Config(t, plugin, full)
}

func run(t *testing.T, c *instance, customer, token string) (int, string) {
	t.Helper()
	h := http.Header{}
	if token != "" {
		h.Set("X-Payment-Token", token)
	}
	env, err := test.New(t, test.Request{Method: "GET", Url: "https://gw.example/training/plan", Headers: h})
	if err != nil {
		t.Fatal(err)
	}
	if customer != "" {
		s, _ := claims.Encode(&claims.Verified{CustomerID: customer, Country: "DE"})
		env.Ctx.Store[claims.SharedKey] = s
	}
	kongxtest.Do(env, c)
	var b struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(env.ClientRes.Body, &b)
	return env.ClientRes.Status, b.Code
}

func waitSynced(t *testing.T, c *instance) {
	t.Helper()
	probe, _ := issuer(t, time.Now()).Issue(alice, []string{"coach"})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, code := run(t, c, alice, probe.Token); code != "revocation_state_stale" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("follower never synced")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPlugin(t *testing.T) {
	m := miniredis.RunT(t)
	c := kongConfig(t, m.Addr(), nil)
	waitSynced(t, c)
	now := time.Now()
	good, _ := issuer(t, now).Issue(alice, []string{"coach"})
	noCoach, _ := issuer(t, now).Issue(alice, []string{"nutrition"})
	expired, _ := issuer(t, now.Add(-time.Hour)).Issue(alice, []string{"coach"})

	for _, tc := range []struct {
		name, customer, token string
		status                int
		code                  string
	}{
		{"valid", alice, good.Token, 200, ""},
		{"missing", alice, "", 401, "payment_token_missing"},
		{"invalid", alice, "x.y.z", 401, "payment_token_invalid"},
		{"expired", alice, expired.Token, 401, "payment_token_expired"},
		{"A's token with B's JWT", bob, good.Token, 403, "payment_token_customer_mismatch"},
		{"no entitlement", alice, noCoach.Token, 403, "entitlement_missing"},
		{"no jwt-claims before", "", good.Token, 401, "claims_missing"},
	} {
		if st, code := run(t, c, tc.customer, tc.token); st != tc.status || code != tc.code {
			t.Errorf("%s: got %d %s, want %d %s", tc.name, st, code, tc.status, tc.code)
		}
	}
}

func TestMisconfigured(t *testing.T) {
	for name, set := range map[string]map[string]any{
		"no redis":     {"redis": nil},
		"no keys":      {"keys": nil},
		"bad lifetime": {"max_token_lifetime_seconds": -1},
	} {
		c := kongConfig(t, "127.0.0.1:1", set)
		if st, code := run(t, c, alice, "x"); st != 500 || code != "plugin_misconfigured" {
			t.Errorf("%s: got %d %s", name, st, code)
		}
	}
}

// TestRevocationAgainstRealRedis: a cancellation published by the payment
// service revokes a live token on the next request, with no Redis call on
// the request path; a token issued after reactivation passes; losing Redis
// for longer than stale_after_seconds fails closed.
func TestRevocationAgainstRealRedis(t *testing.T) {
	srv := redistest.Start(t)
	c := kongConfig(t, srv.Addr, map[string]any{"stale_after_seconds": 1, "events_stream": "rev-test"})
	waitSynced(t, c)
	tok, _ := issuer(t, time.Now()).Issue(alice, []string{"coach"})
	if st, _ := run(t, c, alice, tok.Token); st != 200 {
		t.Fatalf("valid token: %d", st)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	pub, _ := payevents.NewPublisher(rdb, "rev-test", time.Hour)
	if _, err := pub.Publish(context.Background(), payevents.Event{Type: payevents.Cancellation, CustomerID: alice, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		st, code := run(t, c, alice, tok.Token)
		if st == 401 && code == "payment_token_revoked" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cancellation not applied within 2s: %d %s", st, code)
		}
		time.Sleep(5 * time.Millisecond)
	}
	fresh, _ := issuer(t, time.Now().Add(2*time.Second)).Issue(alice, []string{"coach"})
	if _, err := pub.Publish(context.Background(), payevents.Event{Type: payevents.Reactivation, CustomerID: alice, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if st, code := run(t, c, alice, fresh.Token); st != 200 {
		t.Fatalf("token issued after reactivation: %d %s", st, code)
	}
	srv.Stop()
	time.Sleep(1500 * time.Millisecond)
	if st, code := run(t, c, alice, fresh.Token); st != 503 || code != "revocation_state_stale" {
		t.Fatalf("Redis gone for longer than the bound: %d %s", st, code)
	}
}

// README.md's PDK-call table, counted through the Kong adapter.
func TestReadmePDKCalls(t *testing.T) {
	m := miniredis.RunT(t)
	c := kongConfig(t, m.Addr(), nil)
	waitSynced(t, c)
	good, _ := issuer(t, time.Now()).Issue(alice, []string{"coach"})
	req := func(token string) *test.TestEnv {
		env := kongxtest.Request(t, "/training/plan", http.Header{"X-Payment-Token": {token}})
		s, _ := claims.Encode(&claims.Verified{CustomerID: alice, Country: "DE"})
		env.Ctx.Store[claims.SharedKey] = s
		return env
	}
	fwd := kongConfig(t, m.Addr(), map[string]any{"forward_token": true})
	waitSynced(t, fwd)
	missing := kongxtest.Request(t, "/training/plan", nil)
	s, _ := claims.Encode(&claims.Verified{CustomerID: alice, Country: "DE"})
	missing.Ctx.Store[claims.SharedKey] = s
	docblock.Check(t, "README.md", "pdk", kongxtest.CallsTable(t,
		kongxtest.Case{Name: "allowed (the token header removed in the one set_headers)", Instance: c, Env: req(good.Token), Status: 200},
		kongxtest.Case{Name: "allowed, `forward_token: true`", Instance: fwd, Env: req(good.Token), Status: 200},
		kongxtest.Case{Name: "denied: not a payment token (401 `payment_token_invalid`; the token header removed first)", Instance: c, Env: req("garbage"), Status: 401},
		kongxtest.Case{Name: "denied: no token (401 `payment_token_missing`)", Instance: c, Env: missing, Status: 401},
	))
}

// The token is a credential: removed from the upstream request (and with it
// from Kong's log entries, spec/credentials_test.go) unless forward_token.
func TestTokenHeaderHidden(t *testing.T) {
	m := miniredis.RunT(t)
	good, _ := issuer(t, time.Now()).Issue(alice, []string{"coach"})
	for _, forward := range []bool{false, true} {
		c := kongConfig(t, m.Addr(), map[string]any{"forward_token": forward})
		waitSynced(t, c)
		env := kongxtest.Request(t, "/training/plan", http.Header{"X-Payment-Token": {good.Token}})
		s, _ := claims.Encode(&claims.Verified{CustomerID: alice, Country: "DE"})
		env.Ctx.Store[claims.SharedKey] = s
		kongxtest.Do(env, c)
		if got := env.ServiceReq.Headers.Get("X-Payment-Token"); env.ClientRes.Status != 200 || (got != "") == !forward {
			t.Errorf("forward_token %v: %d, upstream X-Payment-Token %q", forward, env.ClientRes.Status, got)
		}
	}
}
