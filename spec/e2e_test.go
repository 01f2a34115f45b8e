// Package spec holds the end-to-end specs: the compiled plugin binaries,
// driven through Kong's plugin-server protocol (spec/kongsim) by a local
// gateway that loads kong/kong.yml (spec/gateway), with a real redis-server
// behind a real Sentinel and the demo services on loopback.
package spec

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/subgate/subgate/spec/kongsim"
	"github.com/subgate/subgate/spec/realkong"
	"github.com/subgate/subgate/spec/stack"
)

const (
	alice = stack.Alice
	bob   = stack.Bob
)

// world is one run of the specs: the stack plus what the specs observe.
type world struct {
	*stack.Stack
	url    string // the gateway's
	client *http.Client
	mu     sync.Mutex
	calls  map[string][]callRecord // route -> requests' PDK calls (the stand-in's model only)
}

type callRecord struct {
	allowed bool
	calls   map[string][]string
}

// binaries returns the plugin binaries: $SUBGATE_BIN (make test builds
// them there) or a fresh build into a temp dir.
func binaries(t *testing.T) string {
	if dir := os.Getenv("SUBGATE_BIN"); dir != "" {
		return dir
	}
	dir := t.TempDir()
	entries, err := os.ReadDir("../plugins")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, e.Name()), "../plugins/"+e.Name()).CombinedOutput()
		if err != nil {
			t.Fatalf("building %s: %v\n%s", e.Name(), err, out)
		}
	}
	return dir
}

// setup starts the stack with the stand-in for Kong.
func setup(t *testing.T) *world { return setupWith(t, stack.Options{}) }

// setupKong starts the stack with a real Kong (see realkong.Require).
func setupKong(t *testing.T, o stack.Options) *world {
	t.Helper()
	o.Kong = realkong.Require(t)
	return setupWith(t, o)
}

// setupWith starts the stack as o says, with the shipped kong.yml,
// plugins.env and seed, and the demo services on free ports.
func setupWith(t *testing.T, o stack.Options) *world {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("SUBGATE_REQUIRE_REDIS") == "1" {
			t.Fatal("redis-server not installed and SUBGATE_REQUIRE_REDIS=1")
		}
		t.Skip("redis-server not installed")
	}
	o.BinDir, o.KongYML, o.SeedCSV = binaries(t), "../kong/kong.yml", "../"+stack.SeedCSV
	o.GatewayAddr, o.IdentityAddr, o.PaymentAddr, o.EchoAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	st, err := stack.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	w := &world{Stack: st, url: st.GatewayURL, client: &http.Client{Timeout: 30 * time.Second}, calls: map[string][]callRecord{}}
	if st.Gateway == nil {
		return w
	}
	st.Gateway.Observe = func(route string, req *kongsim.Request) {
		rec := callRecord{allowed: req.Exited() == nil, calls: map[string][]string{}}
		for name := range st.Infos {
			if c := req.Calls(name); len(c) > 0 {
				rec.calls[name] = c
			}
		}
		w.mu.Lock()
		w.calls[route] = append(w.calls[route], rec)
		w.mu.Unlock()
	}
	return w
}

func (w *world) token(t *testing.T, customer, country string, ttl time.Duration) string {
	t.Helper()
	tok, err := w.Identity.Token(customer, country, ttl, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type response struct {
	status  int
	header  http.Header
	body    map[string]any
	raw     string
	upstrm  map[string]string // the echo's view of the headers it received
	upstrOK bool
}

// do sends a request through the gateway. rawPath is sent as is.
func (w *world) do(t *testing.T, method, rawPath string, h http.Header) response {
	t.Helper()
	req, err := http.NewRequest(method, w.url+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = rawPath // keeps %-encodings, dots and slashes exactly as written
	req.Header = h
	resp, err := w.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	_ = json.Unmarshal(b, &r.body)
	if hs, ok := r.body["headers"].(map[string]any); ok && r.body["method"] != nil {
		r.upstrOK = true
		r.upstrm = map[string]string{}
		for k, v := range hs {
			r.upstrm[k], _ = v.(string)
		}
	}
	return r
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// challenge is how a 401's WWW-Authenticate starts: without a token the
// client learns only the scheme and realm (RFC 6750 3.1).
func challenge(code string) string {
	if code == "token_missing" {
		return `Bearer realm="subgate"`
	}
	return `Bearer error="invalid_token"`
}

func (r response) wantDenied(t *testing.T, status int, code string) {
	t.Helper()
	if r.status != status || r.body["code"] != code {
		t.Fatalf("got %d %s, want %d %s", r.status, r.raw, status, code)
	}
	if id, _ := r.body["request_id"].(string); len(id) != 32 {
		t.Fatalf("no request_id in %s", r.raw)
	}
	if r.upstrOK {
		t.Fatal("a denial reached the upstream")
	}
	if status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), challenge(code)) {
		t.Fatalf("401 without WWW-Authenticate: %v", r.header)
	}
}

func (r response) wantAllowed(t *testing.T) {
	t.Helper()
	if r.status != 200 || !r.upstrOK {
		t.Fatalf("got %d %s, want the upstream's 200", r.status, r.raw)
	}
}

func TestEndToEnd(t *testing.T) {
	w := setup(t)

	t.Run("plugin info as Kong reads it", func(t *testing.T) {
		order := []string{"jwt-claims", "subscription-owner", "payment-token", "user-context"}
		last := 1 << 30
		for _, name := range order {
			info, ok := w.Infos[name]
			if !ok {
				t.Fatalf("%s: no plugin server", name)
			}
			if fmt.Sprint(info.Phases) != "[access]" || info.Version == "" {
				t.Errorf("%s: phases %v version %q", name, info.Phases, info.Version)
			}
			if info.Priority >= last {
				t.Errorf("%s: priority %d not below the plugin before it (%d)", name, info.Priority, last)
			}
			last = info.Priority
		}
		// subgate runs the whole chain where its first plugin runs.
		sg, jc := w.Infos["subgate"], w.Infos["jwt-claims"]
		if fmt.Sprint(sg.Phases) != "[access]" || sg.Priority != jc.Priority {
			t.Errorf("subgate: phases %v priority %d, want [access] and jwt-claims' %d", sg.Phases, sg.Priority, jc.Priority)
		}
	})

	t.Run("public route runs no plugin", func(t *testing.T) {
		r := w.do(t, "GET", "/public/hello", http.Header{"X-Customer-Id": {"spoofed"}})
		r.wantAllowed(t)
	})

	// Every scenario through both shapes: the chain and subgate.
	runScenarios(t, w, scenarios)

	t.Run("user-context alone", func(t *testing.T) {
		h := bearer(w.token(t, alice, "DE", time.Hour))
		h.Set("X-User-Id", bob)
		r := w.do(t, "GET", "/account", h)
		r.wantAllowed(t)
		if r.upstrm["X-User-Id"] != alice || r.upstrm["X-User-Context-Source"] != "identity" {
			t.Fatalf("upstream %v", r.upstrm)
		}
	})

	t.Run("PDK calls on the allow path", func(t *testing.T) {
		w.mu.Lock()
		w.calls = map[string][]callRecord{}
		w.mu.Unlock()
		tok := bearer(w.token(t, alice, "DE", time.Hour))
		w.do(t, "GET", "/me", tok).wantAllowed(t)
		w.do(t, "GET", "/subscriptions/1234", tok).wantAllowed(t)
		w.do(t, "GET", "/public/x", nil).wantAllowed(t)
		paid := tok.Clone()
		pt, _ := w.Payment.Token(alice, []string{"coach"}, false)
		paid.Set("X-Payment-Token", pt.Token)
		w.do(t, "GET", "/training/plan", paid).wantAllowed(t)
		w.do(t, "GET", "/account", tok).wantAllowed(t)
		w.do(t, "GET", "/coach/subscriptions/1234", paid).wantAllowed(t)
		w.do(t, "GET", "/whoami", tok).wantAllowed(t)
		// subgate: the same routes in one plugin.
		w.do(t, "GET", "/sg/me", tok).wantAllowed(t)
		w.do(t, "GET", "/sg/subscriptions/1234", tok).wantAllowed(t)
		w.do(t, "GET", "/sg/training/plan", paid).wantAllowed(t)
		w.do(t, "GET", "/sg/whoami", tok).wantAllowed(t)
		w.do(t, "GET", "/sg/coach/subscriptions/1234", paid).wantAllowed(t)
		budget := map[string]int{"jwt-claims": 3, "subscription-owner": 3 /* 2 + verified_header */, "payment-token": 3 /* 2 + removing the token header */, "user-context": 3 /* 2 + match_user's kong.ctx.shared */, "subgate": 3}
		var table strings.Builder
		table.WriteString("\n| route | plugin | PDK calls | methods |\n| --- | --- | --- | --- |\n")
		w.mu.Lock()
		defer w.mu.Unlock()
		routes := make([]string, 0, len(w.calls))
		for r := range w.calls {
			routes = append(routes, r)
		}
		sort.Strings(routes)
		for _, route := range routes {
			for _, rec := range w.calls[route] {
				if !rec.allowed {
					t.Fatalf("%s was denied", route)
				}
				total := 0
				for _, name := range []string{"jwt-claims", "subscription-owner", "payment-token", "user-context", "subgate"} {
					c, ok := rec.calls[name]
					if !ok {
						continue
					}
					if name == "subgate" {
						for _, m := range c {
							if strings.HasPrefix(m, "kong.ctx.") {
								t.Errorf("subgate on %s called %s: the claims stay in Go", route, m)
							}
						}
						want := 2 // get_headers, set_headers
						if route == "sg-subscriptions" || route == "sg-coaching" {
							want = 3 // and get_path, for the ownership section
						}
						if len(c) != want {
							t.Errorf("subgate on %s: %d PDK calls (%v), want %d", route, len(c), c, want)
						}
					}
					total += len(c)
					fmt.Fprintf(&table, "| %s | %s | %d | %s |\n", route, name, len(c), strings.Join(c, ", "))
					if b, ok := budget[name]; ok && len(c) > b {
						t.Errorf("%s on %s: %d PDK calls, budget %d", name, route, len(c), b)
					}
				}
				fmt.Fprintf(&table, "| %s | **chain** | %d | |\n", route, total)
				if total > 11 {
					t.Errorf("%s: %d PDK calls for the chain, budget 11", route, total)
				}
			}
		}
		t.Log(table.String())
	})

	t.Run("subgate's PDK calls on a denial", func(t *testing.T) {
		w.mu.Lock()
		w.calls = map[string][]callRecord{}
		w.mu.Unlock()
		w.do(t, "GET", "/sg/me", nil).wantDenied(t, 401, "token_missing")
		w.do(t, "GET", "/sg/coach/subscriptions/5678", bearer(w.token(t, alice, "DE", time.Hour))).wantDenied(t, 403, "subscription_forbidden")
		w.mu.Lock()
		defer w.mu.Unlock()
		// The reads, then what kongx.Gate adds to every denial: Kong's
		// request id, the serialized decision, the exit.
		for route, want := range map[string]string{
			"sg-profile":  "kong.request.get_headers kong.nginx.get_var kong.log.set_serialize_value kong.response.exit",
			"sg-coaching": "kong.request.get_headers kong.request.get_path kong.nginx.get_var kong.log.set_serialize_value kong.response.exit",
		} {
			recs := w.calls[route]
			if len(recs) != 1 || recs[0].allowed {
				t.Fatalf("%s: %+v", route, recs)
			}
			if got := strings.Join(recs[0].calls["subgate"], " "); got != want {
				t.Errorf("%s denial: %s, want %s", route, got, want)
			}
		}
	})

	runScenarios(t, w, redisDown)

	t.Run("a killed plugin server is an error, never an allow", func(t *testing.T) {
		tok := bearer(w.token(t, alice, "DE", time.Hour))
		old, err := w.Kill("subscription-owner")
		if err != nil {
			t.Fatal(err)
		}
		// Until the supervisor has respawned it (within a second): bob's
		// subscription is a 500, never an allow.
		r := w.do(t, "GET", "/subscriptions/5678", tok)
		if r.upstrOK || (r.status != 500 && r.status != 403) {
			t.Fatalf("with the plugin server killed: %d %s", r.status, r.raw)
		}
		if err := w.WaitRespawned("subscription-owner", old, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		// Kong starts the instance again on "closed" and retries.
		w.do(t, "GET", "/subscriptions/1234", tok).wantAllowed(t)
		w.do(t, "GET", "/subscriptions/5678", tok).wantDenied(t, 403, "subscription_forbidden")
	})

	t.Run("audit lines never carry a token", func(t *testing.T) {
		tok := w.token(t, alice, "DE", time.Hour)
		w.do(t, "GET", "/me", bearer(tok)).wantAllowed(t)
		// The output reaches the supervisor through a pipe: wait for the line.
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(w.Output.Of("jwt-claims"), `"route_id":"route-profile"`) && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		out := w.Output.Of("jwt-claims")
		if strings.Contains(w.Output.String(), tok) || strings.Contains(w.Output.String(), strings.Split(tok, ".")[2]) {
			t.Fatal("a token reached the plugin servers' output")
		}
		if !strings.Contains(out, `"decision":"allow"`) || !strings.Contains(out, `"route_id":"route-profile"`) {
			t.Fatalf("no audit line for the allowed request:\n%s", tail(out, 2000))
		}
		// The supervisor writes it "[jwt-claims:PID] " first, as Kong's
		// error log would; Kong's own error log has none of it.
		if !strings.Contains(w.Output.String(), fmt.Sprintf("[jwt-claims:%d] {", w.Pid("jwt-claims"))) {
			t.Fatalf("the audit line is not prefixed with the server's name and pid:\n%s", tail(w.Output.String(), 2000))
		}
		if seen := strings.Join(w.PluginLog(), "\n"); strings.Contains(seen, `"decision":"allow"`) {
			t.Fatalf("an audit line in Kong's error log:\n%s", tail(seen, 2000))
		}
	})
}

// waitRoute waits until the payment-token plugin's follower has synced
// (before it, the route answers 503 revocation_state_stale: fail closed).
func (w *world) waitRoute(t *testing.T, path, customer string) {
	t.Helper()
	tok, _ := w.Payment.Token(customer, []string{"coach"}, false)
	h := bearer(w.token(t, customer, "DE", time.Hour))
	h.Set("X-Payment-Token", tok.Token)
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := w.do(t, "GET", path, h)
		if r.body["code"] != "revocation_state_stale" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still %d %s after 5s", path, r.status, r.raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
