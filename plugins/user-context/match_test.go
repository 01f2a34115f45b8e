package main

import (
	"net/http"
	"testing"

	"github.com/Kong/go-pdk/test"

	"github.com/subgate/subgate/pkg/claims"
	"github.com/subgate/subgate/pkg/kongx/kongxtest"
)

// On the chain, match_user reads the claims jwt-claims stored in
// kong.ctx.shared: an answer naming another user is refused, one naming the
// verified customer passes, and a route without jwt-claims is looked up as
// before (match_user verified) or refused (required).
func TestMatchUserReadsTheSharedClaims(t *testing.T) {
	srv, _ := identity(t) // answers the bearer credential as the user id
	withClaims := func(c *instance, customer, bearer string) *test.TestEnv {
		env := kongxtest.Request(t, "/coach", http.Header{"Authorization": {"Bearer " + bearer}})
		s, err := claims.Encode(&claims.Verified{CustomerID: customer})
		if err != nil {
			t.Fatal(err)
		}
		env.Ctx.Store[claims.SharedKey] = s
		kongxtest.Do(env, c)
		return env
	}
	c := kongConfig(t, map[string]any{"identity_url": srv.URL})
	if env := withClaims(c, "alice", "alice"); env.ClientRes.Status != 200 || env.ServiceReq.Headers.Get("X-User-Id") != "alice" {
		t.Fatalf("same user: %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	if env := withClaims(c, "alice", "bob"); env.ClientRes.Status != 403 || kongxtest.Code(t, env) != "identity_user_mismatch" {
		t.Fatalf("another user: %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	if env := run(t, c, http.Header{"Authorization": {"Bearer bob"}}); env.ClientRes.Status != 200 {
		t.Fatalf("no jwt-claims on the route: %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	req := kongConfig(t, map[string]any{"identity_url": srv.URL, "match_user": "required"})
	if env := run(t, req, http.Header{"Authorization": {"Bearer bob"}}); env.ClientRes.Status != 401 || kongxtest.Code(t, env) != "claims_missing" {
		t.Fatalf("required without jwt-claims: %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	off := kongConfig(t, map[string]any{"identity_url": srv.URL, "match_user": "off"})
	if env := withClaims(off, "alice", "bob"); env.ClientRes.Status != 200 || env.ServiceReq.Headers.Get("X-User-Id") != "bob" {
		t.Fatalf("off: %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
}
