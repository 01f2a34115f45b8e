package main

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"github.com/Kong/go-pdk/test"
	"github.com/golang-jwt/jwt/v5"

	"github.com/subgate/subgate/pkg/claims"
	"github.com/subgate/subgate/pkg/kongx/kongxtest"
)

const customer = "7d3e2a10-1c4b-4a5e-9f00-3c2b1a000001" // goodClaims' sub

// alicesConsumer is the Kong consumer whose username is the customer id.
var alicesConsumer = &pb.Consumer{Id: "0b9e3a77-5d1c-4f7e-8a6b-000000000a11", Username: customer, CustomId: "cust-alice"}

// consumerRun sends one request with a token of claims c (goodClaims when
// nil) through an instance with set's consumer mapping, Kong holding
// consumers, and returns the environment and the PDK calls made.
func consumerRun(t *testing.T, i *instance, c jwt.MapClaims, consumers ...*pb.Consumer) (*test.TestEnv, []string) {
	t.Helper()
	if c == nil {
		c = goodClaims()
	}
	h := bearer(sign(t, jwt.SigningMethodES256, ecKey, "k1", c))
	for _, name := range []string{"X-Consumer-Id", "X-Consumer-Username", "X-Consumer-Custom-Id", "X-Credential-Identifier", "X-Anonymous-Consumer"} {
		h.Set(name, "spoofed")
	}
	env := kongxtest.Request(t, "/subscriptions/1/deliveries", h)
	kongxtest.Consumers(env, consumers...)
	return env, kongxtest.Do(env, i)
}

func upstreamHeader(env *test.TestEnv, name string) string {
	return strings.Join(env.ServiceReq.Headers.Values(name), ",")
}

// The credential alone: Kong learns the credential id from the named
// claim, the upstream its X-Credential-Identifier, and no client copy of
// Kong's consumer headers passes. One PDK call more than without mapping.
func TestCredentialFromClaim(t *testing.T) {
	i := kongConfig(t, withKeys(map[string]any{"credential_claim": "sub"}))
	env, calls := consumerRun(t, i, nil)
	if env.ClientRes.Status != 200 {
		t.Fatalf("%d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	a := kongxtest.Authenticated(env)
	if a == nil || a.Credential.GetId() != customer || a.Consumer != nil {
		t.Fatalf("authenticated %v", a)
	}
	if got := upstreamHeader(env, "X-Credential-Identifier"); got != customer {
		t.Errorf("X-Credential-Identifier %q", got)
	}
	for _, h := range []string{"X-Consumer-Id", "X-Consumer-Username", "X-Consumer-Custom-Id", "X-Anonymous-Consumer"} {
		if got := upstreamHeader(env, h); got != "" {
			t.Errorf("%s reached the upstream: %q", h, got)
		}
	}
	if want := []string{"kong.request.get_headers", "kong.client.authenticate", "kong.ctx.shared.set", "kong.service.request.set_headers"}; !slices.Equal(calls, want) {
		t.Errorf("calls %v, want %v", calls, want)
	}
}

// A consumer found by username: Kong authenticates it with the
// credential, the upstream gets Kong's consumer headers, and, cached, the
// next request asks Kong nothing more than authenticate.
func TestConsumerByUsername(t *testing.T) {
	i := kongConfig(t, withKeys(map[string]any{"credential_claim": "sub", "consumer_claim": "sub"}))
	env, calls := consumerRun(t, i, nil, alicesConsumer)
	if env.ClientRes.Status != 200 {
		t.Fatalf("%d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	a := kongxtest.Authenticated(env)
	if a == nil || a.Consumer.GetId() != alicesConsumer.Id || a.Credential.GetId() != customer || a.Credential.GetConsumerId() != alicesConsumer.Id {
		t.Fatalf("authenticated %v", a)
	}
	for h, want := range map[string]string{"X-Consumer-Id": alicesConsumer.Id, "X-Consumer-Username": customer, "X-Consumer-Custom-Id": "cust-alice", "X-Credential-Identifier": customer, "X-Anonymous-Consumer": ""} {
		if got := upstreamHeader(env, h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if !slices.Contains(calls, "kong.client.load_consumer") {
		t.Errorf("first request: no lookup in %v", calls)
	}
	env, calls = consumerRun(t, i, nil, alicesConsumer)
	if env.ClientRes.Status != 200 || slices.Contains(calls, "kong.client.load_consumer") {
		t.Errorf("second request: %d, calls %v", env.ClientRes.Status, calls)
	}
	off := kongConfig(t, withKeys(map[string]any{"consumer_claim": "sub", "consumer_cache_seconds": 0}))
	for range 2 {
		if _, calls := consumerRun(t, off, nil, alicesConsumer); !slices.Contains(calls, "kong.client.load_consumer") {
			t.Errorf("consumer_cache_seconds 0: no lookup in %v", calls)
		}
	}
}

// A consumer by id, from a claim that holds Kong's consumer id.
func TestConsumerByID(t *testing.T) {
	i := kongConfig(t, withKeys(map[string]any{"consumer_claim": "kong_id", "consumer_by": "id"}))
	c := goodClaims()
	c["kong_id"] = strings.ToUpper(alicesConsumer.Id) // Kong's ids compare without case
	alicesConsumerUpper := &pb.Consumer{Id: c["kong_id"].(string), Username: alicesConsumer.Username}
	env, _ := consumerRun(t, i, c, alicesConsumerUpper)
	if env.ClientRes.Status != 200 || kongxtest.Authenticated(env).GetConsumer().GetUsername() != customer {
		t.Fatalf("%d %s %v", env.ClientRes.Status, env.ClientRes.Body, kongxtest.Authenticated(env))
	}
	// Not a UUID: Kong would raise an error (a 500), so it is never asked.
	c["kong_id"] = "alice"
	env, calls := consumerRun(t, i, c, alicesConsumer)
	denied(t, env, 403, "consumer_unknown")
	if slices.Contains(calls, "kong.client.load_consumer") {
		t.Errorf("a non-UUID id was looked up: %v", calls)
	}
}

// Absent consumer: 403 by default, 401 when the route says, or the
// credential alone; never an allow as someone else.
func TestConsumerMissing(t *testing.T) {
	for _, c := range []struct {
		missing string
		status  int
	}{{"", 403}, {"403", 403}, {"401", 401}} {
		set := map[string]any{"credential_claim": "sub", "consumer_claim": "sub"}
		if c.missing != "" {
			set["consumer_missing"] = c.missing
		}
		env, _ := consumerRun(t, kongConfig(t, withKeys(set)), nil)
		denied(t, env, c.status, "consumer_unknown")
		if kongxtest.Authenticated(env) != nil {
			t.Errorf("%s: authenticated on a denial", c.missing)
		}
	}
	env, _ := consumerRun(t, kongConfig(t, withKeys(map[string]any{"credential_claim": "sub", "consumer_claim": "sub", "consumer_missing": "credential"})), nil)
	a := kongxtest.Authenticated(env)
	if env.ClientRes.Status != 200 || a == nil || a.Consumer != nil || a.Credential.GetId() != customer || a.Credential.GetConsumerId() != "" {
		t.Fatalf("credential only: %d %v", env.ClientRes.Status, a)
	}
	// By username Kong first tries the value as an id: a consumer whose
	// id is the value but whose username is not is someone else.
	other := &pb.Consumer{Id: customer, Username: "mallory"}
	env, _ = consumerRun(t, kongConfig(t, withKeys(map[string]any{"consumer_claim": "sub"})), nil, other)
	denied(t, env, 403, "consumer_unknown")
}

// A claim the mapping names but the token lacks is refused like a missing
// customer id; a mapping that cannot work is refused at instance start.
func TestConsumerMappingRefusals(t *testing.T) {
	c := goodClaims()
	delete(c, "plan")
	env, _ := consumerRun(t, kongConfig(t, withKeys(map[string]any{"credential_claim": "plan"})), c)
	denied(t, env, 401, "token_claim_missing")
	for name, set := range map[string]map[string]any{
		"credential fallback without a credential": {"consumer_claim": "sub", "consumer_missing": "credential"},
		"consumer header mapped to a claim":        {"credential_claim": "sub", "upstream_headers": map[string]string{"X-Consumer-ID": "sub"}},
	} {
		if i := kongConfig(t, withKeys(set)); i.Err() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// run_on_preflight false: a CORS preflight passes unchecked, with every
// owned header removed and the marker left for the plugins after this
// one; an OPTIONS without Access-Control-Request-Method, or any request
// on a route that checks preflights (the default), is decided.
func TestPreflight(t *testing.T) {
	preflight := http.Header{"Origin": {"https://app.example"}, "Access-Control-Request-Method": {"GET"}, "X-Customer-Id": {"spoofed"}}
	send := func(i *instance, h http.Header, method string) (*test.TestEnv, []string) {
		env := kongxtest.Request(t, "/subscriptions/1/deliveries", h)
		kongxtest.Method(env, method)
		return env, kongxtest.Do(env, i)
	}
	pass := kongConfig(t, withKeys(map[string]any{"run_on_preflight": false}))
	env, calls := send(pass, preflight, "OPTIONS")
	if env.ClientRes.Status != 200 || upstreamHeader(env, "X-Customer-Id") != "" || env.Ctx.Store[claims.SharedKey] != "preflight" {
		t.Fatalf("preflight: %d, upstream %v, shared %v", env.ClientRes.Status, env.ServiceReq.Headers, env.Ctx.Store)
	}
	if want := []string{"kong.request.get_headers", "kong.request.get_method", "kong.ctx.shared.set", "kong.service.request.set_headers"}; !slices.Equal(calls, want) {
		t.Errorf("calls %v, want %v", calls, want)
	}
	denied(t, first(send(pass, http.Header{"Origin": {"https://app.example"}}, "OPTIONS")), 401, "token_missing")
	denied(t, first(send(pass, preflight, "GET")), 401, "token_missing")
	denied(t, first(send(kongConfig(t, esKeys()), preflight, "OPTIONS")), 401, "token_missing")
	// A browser's CORS request (Origin, no Access-Control-Request-Method)
	// costs no PDK call more.
	h := bearer(sign(t, jwt.SigningMethodES256, ecKey, "k1", goodClaims()))
	h.Set("Origin", "https://app.example")
	if env, calls := send(pass, h, "GET"); env.ClientRes.Status != 200 || slices.Contains(calls, "kong.request.get_method") {
		t.Errorf("CORS request: %d, calls %v", env.ClientRes.Status, calls)
	}
}

func first(env *test.TestEnv, _ []string) *test.TestEnv { return env }
