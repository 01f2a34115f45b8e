package kongx_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/Kong/go-pdk/test"

	"github.com/subgate/subgate/pkg/check"
	"github.com/subgate/subgate/pkg/claims"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/kongx"
	"github.com/subgate/subgate/pkg/kongx/kongxtest"
	"github.com/subgate/subgate/pkg/metrics"
)

// probe is a minimal check run by the generic adapter as the real plugins
// are; decide is its decision.
type probeConfig struct {
	Fail bool `json:"fail"`
}

type probe struct {
	reads  check.Reads
	decide func(req *check.Request) *denial.Denial
}

func (p probe) Reads() check.Reads { return p.reads }
func (p probe) Owned() []string    { return nil }
func (p probe) Decide(_ context.Context, req *check.Request, _ *check.Audit) (check.Decision, *denial.Denial) {
	return check.Decision{}, p.decide(req)
}

func newProbe(t *testing.T, cfg string, reads check.Reads, decide func(*check.Request) *denial.Denial) *kongx.Instance[probeConfig, probe] {
	t.Helper()
	plugin := kongx.NewPlugin("probe", 1, func(c probeConfig) (probe, error) {
		if c.Fail {
			return probe{}, errors.New("fail was set")
		}
		return probe{reads, decide}, nil
	})
	i := plugin.New().(*kongx.Instance[probeConfig, probe])
	if cfg != "" {
		if err := i.UnmarshalJSON([]byte(cfg)); err != nil {
			t.Fatal(err)
		}
	}
	return i
}

func do(t *testing.T, i *kongx.Instance[probeConfig, probe], h http.Header) *test.TestEnv {
	t.Helper()
	env, err := test.New(t, test.Request{Method: "GET", Url: "http://gw/x", Headers: h})
	if err != nil {
		t.Fatal(err)
	}
	kongxtest.Do(env, i)
	return env
}

func capture(t *testing.T) *bytes.Buffer {
	var b bytes.Buffer
	kongx.SetOutput(&b)
	t.Cleanup(func() { kongx.SetOutput(&bytes.Buffer{}) })
	return &b
}

func TestPanicIsRecoveredAndDenied(t *testing.T) {
	logs := capture(t)
	before := metrics.Decisions.Value("probe", "r1", "deny", "internal_error")
	p := newProbe(t, `{"route_id":"r1"}`, 0, func(*check.Request) *denial.Denial {
		var m []int
		m[1] = 1 // out-of-range write: a real panic
		return nil
	})
	env := do(t, p, nil)
	if env.ClientRes.Status != 500 || kongxtest.Code(t, env) != "internal_error" {
		t.Fatalf("panic answered %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	if !strings.Contains(logs.String(), "panic in plugin handler") || !strings.Contains(logs.String(), `"route_id":"r1"`) {
		t.Fatalf("logs: %s", logs)
	}
	if metrics.Decisions.Value("probe", "r1", "deny", "internal_error") != before+1 {
		t.Fatal("panic not counted")
	}
}

func TestUndecodedOrInvalidConfigIsDenied(t *testing.T) {
	allow := func(*check.Request) *denial.Denial { return nil }
	for name, cfg := range map[string]string{"never decoded": "", "build fails": `{"fail":true}`, "wrong type": `{"fail":"yes"}`} {
		t.Run(name, func(t *testing.T) {
			env := do(t, newProbe(t, cfg, 0, allow), nil)
			if env.ClientRes.Status != 500 || kongxtest.Code(t, env) != "plugin_misconfigured" {
				t.Fatalf("got %d %s", env.ClientRes.Status, env.ClientRes.Body)
			}
		})
	}
	env := do(t, newProbe(t, `{"fail":null}`, 0, allow), nil)
	if env.ClientRes.Status != 200 {
		t.Fatalf("valid config denied: %d", env.ClientRes.Status)
	}
}

func TestReadClaimsRequiresJWTClaims(t *testing.T) {
	logs := capture(t)
	var got *claims.Verified
	p := newProbe(t, `{}`, check.Claims, func(req *check.Request) *denial.Denial {
		got = req.Claims
		return nil
	})
	// A client header that looks like claims is irrelevant: only ctx.shared counts.
	env := do(t, p, http.Header{"X-Customer-Id": {"spoofed"}})
	if env.ClientRes.Status != 401 || kongxtest.Code(t, env) != "claims_missing" {
		t.Fatalf("got %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	if !strings.Contains(logs.String(), "route misconfigured") {
		t.Fatalf("no misconfiguration log: %s", logs)
	}

	env2, _ := test.New(t, test.Request{Method: "GET", Url: "http://gw/x"})
	s, _ := claims.Encode(&claims.Verified{CustomerID: "c1", Country: "DE"})
	env2.Ctx.Store[claims.SharedKey] = s
	kongxtest.Do(env2, p)
	if env2.ClientRes.Status != 200 || got == nil || got.CustomerID != "c1" {
		t.Fatalf("stored claims not read: %d %+v", env2.ClientRes.Status, got)
	}

	env3, _ := test.New(t, test.Request{Method: "GET", Url: "http://gw/x"})
	env3.Ctx.Store[claims.SharedKey] = `{"v":99,"customer_id":"c1"}`
	kongxtest.Do(env3, p)
	if env3.ClientRes.Status != 401 {
		t.Fatalf("a foreign-version value was accepted: %d", env3.ClientRes.Status)
	}
}

// OptionalClaims (user-context's match_user): a route without jwt-claims
// reads nil and decides; stored claims are read; a value there that is not
// a current verified one is refused as with Claims.
func TestReadOptionalClaims(t *testing.T) {
	var got *claims.Verified
	called := false
	p := newProbe(t, `{}`, check.OptionalClaims, func(req *check.Request) *denial.Denial {
		got, called = req.Claims, true
		return nil
	})
	if env := do(t, p, http.Header{"X-Customer-Id": {"spoofed"}}); env.ClientRes.Status != 200 || !called || got != nil {
		t.Fatalf("no jwt-claims on the route: %d, decided %v with %+v", env.ClientRes.Status, called, got)
	}
	good, _ := claims.Encode(&claims.Verified{CustomerID: "c1"})
	for value, want := range map[string]int{good: 200, `{"v":99,"customer_id":"c1"}`: 401, `{"v":1}`: 401} {
		called = false
		env, _ := test.New(t, test.Request{Method: "GET", Url: "http://gw/x"})
		env.Ctx.Store[claims.SharedKey] = value
		kongxtest.Do(env, p)
		if env.ClientRes.Status != want || (want == 200 && (got == nil || got.CustomerID != "c1")) || (want != 200 && called) {
			t.Errorf("kong.ctx.shared %s: %d (decided %v), want %d", value, env.ClientRes.Status, called, want)
		}
	}
}

func TestDenyShape(t *testing.T) {
	p := newProbe(t, `{}`, 0, func(*check.Request) *denial.Denial {
		return denial.New(denial.OwnershipUnavailable, "").WithRetryAfter(2)
	})
	env := do(t, p, nil)
	if env.ClientRes.Status != 503 || env.ClientRes.Headers.Get("Retry-After") != "2" ||
		!strings.HasPrefix(env.ClientRes.Headers.Get("Content-Type"), "application/json") {
		t.Fatalf("got %d %v", env.ClientRes.Status, env.ClientRes.Headers)
	}
	if env.ClientRes.Headers.Get("WWW-Authenticate") != "" {
		t.Fatal("WWW-Authenticate on a 503")
	}
}

// A CORS preflight jwt-claims let through (its marker in kong.ctx.shared)
// passes every check after it undecided; any other value that is not
// claims is still claims_missing.
func TestPassedPreflightIsNotDecided(t *testing.T) {
	decided := false
	for _, reads := range []check.Reads{check.Claims, check.OptionalClaims} {
		p := newProbe(t, `{}`, reads, func(*check.Request) *denial.Denial { decided = true; return denial.New(denial.InternalError, "") })
		env, err := test.New(t, test.Request{Method: "GET", Url: "http://gw/x"})
		if err != nil {
			t.Fatal(err)
		}
		env.Ctx.Store[claims.SharedKey] = "preflight"
		kongxtest.Do(env, p)
		if env.ClientRes.Status != 200 || decided {
			t.Fatalf("reads %d: %d %s, decided %v", reads, env.ClientRes.Status, env.ClientRes.Body, decided)
		}
		env, _ = test.New(t, test.Request{Method: "GET", Url: "http://gw/x"})
		env.Ctx.Store[claims.SharedKey] = "preflight!"
		kongxtest.Do(env, p)
		if env.ClientRes.Status != 401 || kongxtest.Code(t, env) != "claims_missing" {
			t.Fatalf("reads %d, not the marker: %d %s", reads, env.ClientRes.Status, env.ClientRes.Body)
		}
	}
}
