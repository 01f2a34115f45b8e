package kongx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/test"

	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/jwtclaims"
	"github.com/subgate/subgate/pkg/metrics"
)

// probe is a minimal plugin config exercising the Gate the way the real
// plugins do; decide is what its Access does.
type probeConfig struct {
	Fail bool `json:"fail"`
}

type probe struct {
	probeConfig
	gate   *Gate[string]
	decide func(kong *pdk.PDK, d string, rec *Record) *denial.Denial
}

func (p *probe) UnmarshalJSON(b []byte) error {
	p.gate = Start("probe", b, &p.probeConfig, func(c probeConfig) (string, error) {
		if c.Fail {
			return "", errors.New("fail was set")
		}
		return "decider", nil
	})
	return nil
}

func (p *probe) Access(kong *pdk.PDK) {
	p.gate.Run(kong, func(d string, rec *Record) *denial.Denial { return p.decide(kong, d, rec) })
}

func newProbe(t *testing.T, cfg string, decide func(*pdk.PDK, string, *Record) *denial.Denial) *probe {
	t.Helper()
	p := &probe{gate: Unstarted[string]("probe"), decide: decide}
	if cfg != "" {
		if err := json.Unmarshal([]byte(cfg), p); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func do(t *testing.T, p *probe, h http.Header) *test.TestEnv {
	t.Helper()
	env, err := test.New(t, test.Request{Method: "GET", Url: "http://gw/x", Headers: h})
	if err != nil {
		t.Fatal(err)
	}
	env.DoHttp(p)
	return env
}

func init() { UseGoPDKTestHarness() }

func capture(t *testing.T) *bytes.Buffer {
	var b bytes.Buffer
	SetOutput(&b)
	t.Cleanup(func() { SetOutput(&bytes.Buffer{}) })
	return &b
}

func code(t *testing.T, env *test.TestEnv) string {
	t.Helper()
	var b struct {
		Code string `json:"code"`
	}
	if err := json.Unmarshal(env.ClientRes.Body, &b); err != nil {
		t.Fatalf("body %q", env.ClientRes.Body)
	}
	return b.Code
}

func TestPanicIsRecoveredAndDenied(t *testing.T) {
	logs := capture(t)
	before := metrics.Decisions.Value("probe", "deny", "internal_error")
	p := newProbe(t, `{"route_id":"r1"}`, func(*pdk.PDK, string, *Record) *denial.Denial {
		var m []int
		m[1] = 1 // out-of-range write: a real panic
		return nil
	})
	env := do(t, p, nil)
	if env.ClientRes.Status != 500 || code(t, env) != "internal_error" {
		t.Fatalf("panic answered %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	if !strings.Contains(logs.String(), "panic in plugin handler") || !strings.Contains(logs.String(), `"route_id":"r1"`) {
		t.Fatalf("logs: %s", logs)
	}
	if metrics.Decisions.Value("probe", "deny", "internal_error") != before+1 {
		t.Fatal("panic not counted")
	}
}

func TestUndecodedOrInvalidConfigIsDenied(t *testing.T) {
	allow := func(*pdk.PDK, string, *Record) *denial.Denial { return nil }
	for name, cfg := range map[string]string{"never decoded": "", "build fails": `{"fail":true}`, "wrong type": `{"fail":"yes"}`} {
		t.Run(name, func(t *testing.T) {
			env := do(t, newProbe(t, cfg, allow), nil)
			if env.ClientRes.Status != 500 || code(t, env) != "plugin_misconfigured" {
				t.Fatalf("got %d %s", env.ClientRes.Status, env.ClientRes.Body)
			}
		})
	}
	env := do(t, newProbe(t, `{"fail":null}`, allow), nil)
	if env.ClientRes.Status != 200 {
		t.Fatalf("valid config denied: %d", env.ClientRes.Status)
	}
}

func TestLoadClaimsRequiresJWTClaims(t *testing.T) {
	logs := capture(t)
	var got *jwtclaims.Verified
	p := newProbe(t, `{}`, func(kong *pdk.PDK, _ string, _ *Record) *denial.Denial {
		v, d := LoadClaims(kong, "probe")
		got = v
		return d
	})
	// A client header that looks like claims is irrelevant: only ctx.shared counts.
	env := do(t, p, http.Header{"X-Customer-Id": {"spoofed"}})
	if env.ClientRes.Status != 401 || code(t, env) != "claims_missing" {
		t.Fatalf("got %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
	if !strings.Contains(logs.String(), "route misconfigured") {
		t.Fatalf("no misconfiguration log: %s", logs)
	}

	env2, _ := test.New(t, test.Request{Method: "GET", Url: "http://gw/x"})
	s, _ := jwtclaims.Encode(&jwtclaims.Verified{CustomerID: "c1", Country: "DE"})
	env2.Ctx.Store[jwtclaims.SharedKey] = s
	env2.DoHttp(p)
	if env2.ClientRes.Status != 200 || got == nil || got.CustomerID != "c1" {
		t.Fatalf("stored claims not read: %d %+v", env2.ClientRes.Status, got)
	}

	env3, _ := test.New(t, test.Request{Method: "GET", Url: "http://gw/x"})
	env3.Ctx.Store[jwtclaims.SharedKey] = `{"v":99,"customer_id":"c1"}`
	env3.DoHttp(p)
	if env3.ClientRes.Status != 401 {
		t.Fatalf("a foreign-version value was accepted: %d", env3.ClientRes.Status)
	}
}

func TestDenyShape(t *testing.T) {
	p := newProbe(t, `{}`, func(*pdk.PDK, string, *Record) *denial.Denial {
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

// Kong cuts get_headers at maxHeaders lines without telling the plugin: a
// request at the limit is refused, counting lines (values), not names.
func TestHeaderCountAtKongsLimitIsRefused(t *testing.T) {
	lines := func(names, perName int) map[string][]string {
		h := map[string][]string{}
		for i := range names {
			h[fmt.Sprintf("x-%d", i)] = make([]string, perName)
		}
		return h
	}
	for _, c := range []struct {
		name string
		h    map[string][]string
		deny bool
	}{
		{"999 names", lines(999, 1), false},
		{"1000 names", lines(1000, 1), true},
		{"one name, 1000 lines", lines(1, 1000), true},
		{"500 names twice", lines(500, 2), true},
		{"333 names thrice", lines(333, 3), false},
	} {
		d := checkHeaderCount(c.h)
		if (d != nil) != c.deny || (d != nil && (d.Code != denial.TooManyHeaders || d.Status != 431)) {
			t.Errorf("%s: got %+v, want deny=%v", c.name, d, c.deny)
		}
	}
}

// kongx is the Kong seam every plugin links: it must not import a check
// that only some plugins make (subgate's combination lives in pkg/chain),
// or every plugin binary carries, and exports the metrics of, all of them.
// jwtclaims is the exception: its verified claims are the kong.ctx.shared
// contract kongx stores and loads.
func TestKongxImportsNoOtherCheck(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		parsed, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range parsed.Imports {
			path := strings.Trim(imp.Path.Value, `"`)
			for _, check := range []string{"chain", "ownership", "paytoken", "payevents", "usercontext"} {
				if path == "github.com/subgate/subgate/pkg/"+check {
					t.Errorf("%s imports %s", f, path)
				}
			}
		}
	}
}
