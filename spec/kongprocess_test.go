package spec

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/supervise"
	"github.com/subgate/subgate/spec/realkong"
	"github.com/subgate/subgate/spec/stack"
)

// Kong's process model, with the plugin servers as shipped: started
// outside Kong by subgate-pluginservers (kong/plugins.env).

// Kong's Admin API answers GET / (decK's and the ingress controller's first
// call), /status and every plugin's schema. It does not when Kong starts
// the plugin servers itself (pluginserver_<name>_start_cmd): Kong 3.9.3
// keeps each server's process handle in kong.configuration, which GET /
// cannot serialise. The second half shows that failure, the reason the
// servers run outside Kong.
func TestKongAdminAPIWhole(t *testing.T) {
	w := setupKong(t, stack.Options{})
	get := func(base, path string) (int, string) {
		r, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b := make([]byte, 300)
		n, _ := r.Body.Read(b)
		return r.StatusCode, string(b[:n])
	}
	paths := []string{"/", "/status"}
	for name := range w.Infos {
		paths = append(paths, "/schemas/plugins/"+name)
	}
	for _, p := range paths {
		for range 3 { // every request, not only a first one
			if status, body := get(w.AdminURL, p); status != 200 {
				t.Errorf("GET %s: %d %s", p, status, body)
			}
		}
	}

	// The same Kong, asked to start jwt-claims itself.
	d := w.Deployment
	start, _ := d.Lookup(supervise.Setting("SUBGATE", "jwt-claims", "START_CMD"))
	query, _ := d.Lookup(supervise.Setting("KONG", "jwt-claims", "QUERY_CMD"))
	dir, err := os.MkdirTemp("/tmp", "kong-managed-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	start = strings.Replace(start, d.SocketDir, dir, 1)
	k, err := realkong.Start(realkong.Options{Exe: realkong.Require(t), DeclarativeConfig: []byte("_format_version: \"3.0\"\n"), Env: []string{
		"KONG_PLUGINS=bundled,jwt-claims", "KONG_PLUGINSERVER_NAMES=jwt-claims",
		"KONG_PLUGINSERVER_JWT_CLAIMS_SOCKET=" + dir + "/jwt-claims.socket",
		"KONG_PLUGINSERVER_JWT_CLAIMS_QUERY_CMD=" + query, "KONG_PLUGINSERVER_JWT_CLAIMS_START_CMD=" + start}})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Stop()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(k.ErrorLog(), "[pluginserver] started, pid"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Kong did not start jwt-claims:\n%s", k.ErrorLog())
		}
	}
	status, body := get(k.AdminURL, "/")
	if status != 500 || !strings.Contains(k.ErrorLog(), "Cannot serialise cdata") {
		t.Errorf("with Kong starting the plugin server, GET / answered %d %s; Kong 3.9.3 answers 500 (Cannot serialise cdata): if this changed, the supervisor may no longer be needed", status, body)
	}
}

// trafficResult counts what a load of allowed and must-deny requests saw.
type trafficResult struct {
	allowed, denied, fiveXX, falseAllow, falseDeny, other atomic.Int64
	mu                                                    sync.Mutex
	fiveXXCodes                                           map[string]int
}

// traffic sends, from conc clients until stop closes, alternately a
// request each shape must allow (alice's own subscription, her payment
// token) and one each must deny (bob's subscription): a 200 to the second
// is an unchecked allow.
func traffic(t *testing.T, w *world, conc int, stop <-chan struct{}) *trafficResult {
	t.Helper()
	res := &trafficResult{fiveXXCodes: map[string]int{}}
	pt, err := w.Payment.Token(alice, []string{"coach"}, false)
	if err != nil {
		t.Fatal(err)
	}
	h := bearer(w.token(t, alice, "DE", time.Hour))
	h.Set("X-Payment-Token", pt.Token)
	paths := []struct {
		path  string
		allow bool
	}{
		{"/coach/subscriptions/1234", true}, {"/sg/coach/subscriptions/1234", true},
		{"/coach/subscriptions/5678", false}, {"/sg/coach/subscriptions/5678", false},
	}
	client := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for g := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := paths[i%len(paths)]
				req, _ := http.NewRequest("GET", w.url+p.path, nil)
				req.Header = h.Clone()
				resp, err := client.Do(req)
				if err != nil {
					res.other.Add(1)
					continue
				}
				var body struct {
					Code string `json:"code"`
				}
				_ = jsonDecode(resp, &body)
				switch {
				case resp.StatusCode >= 500:
					res.fiveXX.Add(1)
					res.mu.Lock()
					res.fiveXXCodes[strconv.Itoa(resp.StatusCode)+" "+body.Code]++
					res.mu.Unlock()
				case resp.StatusCode == 200 && p.allow:
					res.allowed.Add(1)
				case resp.StatusCode == 200:
					res.falseAllow.Add(1)
				case p.allow:
					res.falseDeny.Add(1)
				default:
					res.denied.Add(1)
				}
			}
		}()
	}
	t.Cleanup(wg.Wait)
	return res
}

// A plugin server killed with SIGKILL under load: its supervisor respawns
// it, Kong drops its dead connections ("closed") and starts the instances
// again; clients see a bounded number of 5xx and never an unchecked allow.
func TestKongPluginServerKilledUnderLoad(t *testing.T) {
	w := setupKong(t, stack.Options{})
	w.waitRoute(t, "/coach/subscriptions/1234", alice)
	w.waitRoute(t, "/sg/coach/subscriptions/1234", alice)
	stop := make(chan struct{})
	res := traffic(t, w, 8, stop)
	time.Sleep(time.Second)
	var kills []string
	for _, name := range []string{"subgate", "subscription-owner", "payment-token"} {
		old, err := w.Kill(name)
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		if err := w.WaitRespawned(name, old, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		kills = append(kills, fmt.Sprintf("%s respawned in %v", name, time.Since(t0).Round(time.Millisecond)))
		time.Sleep(time.Second)
	}
	before := res.fiveXX.Load()
	time.Sleep(2 * time.Second) // recovered: no 5xx in the last two seconds
	close(stop)
	time.Sleep(100 * time.Millisecond)
	t.Logf("3 kills under 8 clients: %s; %d allowed, %d denied, %d 5xx %v, %d false allows, %d false denies, %d transport errors",
		strings.Join(kills, ", "), res.allowed.Load(), res.denied.Load(), res.fiveXX.Load(), res.fiveXXCodes, res.falseAllow.Load(), res.falseDeny.Load(), res.other.Load())
	if res.falseAllow.Load() != 0 {
		t.Errorf("%d unchecked allows", res.falseAllow.Load())
	}
	if res.falseDeny.Load() != 0 || res.other.Load() != 0 {
		t.Errorf("%d false denies, %d transport errors", res.falseDeny.Load(), res.other.Load())
	}
	// A kill costs the requests in flight on it and those in the second
	// before the respawn; bounded well below the load's rate.
	if n := res.fiveXX.Load(); n > 300 {
		t.Errorf("%d 5xx for three kills", n)
	}
	if after := res.fiveXX.Load(); after != before {
		t.Errorf("%d 5xx after the last recovery", after-before)
	}
	if res.allowed.Load() == 0 || res.denied.Load() == 0 {
		t.Error("the load never got through")
	}
}

// metric reads one plugin server's metric (its first sample) from its
// -metrics-addr listener.
func metric(t *testing.T, w *world, plugin, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + w.Deployment.Metrics[plugin] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return v
		}
	}
	t.Fatalf("%s: no metric %s", plugin, name)
	return 0
}

// redisClients counts the connections the Redis server holds.
func redisClients(t *testing.T, rdb redis.UniversalClient) int {
	t.Helper()
	list, err := rdb.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(list, "\n")
}

var closedInstance = regexp.MustCompile(`closed instance \d+`)

// kong reload (new workers) and POST /config (the Admin API, as decK and
// the ingress controller use it), each with a changed kong.yml: the new
// config takes effect (new instances), and after many of them the plugin
// servers hold no more goroutines, files or Redis connections than after
// the first (stream followers and clients are shared by settings).
// POST /config closes the old instances (Kong calls CloseInstance, which
// go-pdk logs); kong reload's new workers never do, so go-pdk keeps the old
// instances until a later CloseInstance expires them (60 s idle).
func TestKongReloadKeepsNothingBehind(t *testing.T) {
	w := setupKong(t, stack.Options{})
	shipped, err := os.ReadFile("../kong/kong.yml")
	if err != nil {
		t.Fatal(err)
	}
	const ent = "required_entitlements: [coach]"
	if !strings.Contains(string(shipped), ent) {
		t.Fatal("kong.yml's payment config no longer has " + ent)
	}
	changed := []byte(strings.ReplaceAll(string(shipped), ent, "required_entitlements: [coach, nutrition]"))
	rewritten := func(yml []byte) []byte {
		t.Helper()
		b, err := w.RewriteKongYML(yml)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pt, _ := w.Payment.Token(alice, []string{"coach"}, false)
	h := bearer(w.token(t, alice, "DE", time.Hour))
	h.Set("X-Payment-Token", pt.Token)
	want := func(status int, code string) {
		t.Helper()
		for _, p := range []string{"/training/plan", "/sg/training/plan"} {
			w.waitRoute(t, p, alice)
			deadline := time.Now().Add(10 * time.Second)
			for {
				r := w.do(t, "GET", p, h)
				if r.status == status && (code == "" || r.body["code"] == code) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s after the reload: %d %s, want %d %s", p, r.status, r.raw, status, code)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	type sample struct{ goroutines, fds, redis float64 }
	measure := func() sample {
		var s sample
		for name := range w.Infos {
			s.goroutines += metric(t, w, name, "go_goroutines")
			s.fds += metric(t, w, name, "process_open_fds")
		}
		s.redis = float64(redisClients(t, w.RDB))
		return s
	}
	want(200, "")
	for _, how := range []string{"kong reload", "POST /config"} {
		t.Run(how, func(t *testing.T) {
			apply := func(yml []byte) {
				t.Helper()
				var err error
				if how == "kong reload" {
					err = w.Kong.Reload(rewritten(yml))
				} else {
					err = w.Kong.PostConfig(rewritten(yml))
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			closedBefore := len(closedInstance.FindAllString(w.Output.String(), -1))
			apply(changed)
			want(403, "entitlement_missing")
			apply(shipped)
			want(200, "")
			first := measure()
			const n = 5
			for range n {
				apply(changed)
				want(403, "entitlement_missing")
				apply(shipped)
				want(200, "")
			}
			time.Sleep(time.Second) // old workers finish
			last := measure()
			closed := len(closedInstance.FindAllString(w.Output.String(), -1)) - closedBefore
			t.Logf("%s x %d: goroutines %.0f -> %.0f, open fds %.0f -> %.0f, Redis connections %.0f -> %.0f; %d instances closed by Kong",
				how, 2*n+2, first.goroutines, last.goroutines, first.fds, last.fds, first.redis, last.redis, closed)
			if last.goroutines > first.goroutines+20 || last.fds > first.fds+20 || last.redis > first.redis+4 {
				t.Errorf("%s leaks: %+v -> %+v", how, first, last)
			}
			if how == "POST /config" && closed == 0 {
				t.Error("POST /config closed no old instance")
			}
		})
	}
}

// Two nginx workers: each starts its own instances of every plugin config
// and dials the same sockets; the scenario table answers as with one.
func TestKongTwoWorkers(t *testing.T) {
	w := setupKong(t, stack.Options{Workers: 2})
	for deadline := time.Now().Add(10 * time.Second); len(w.Kong.WorkerPids()) != 2; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers, want 2\n%s", len(w.Kong.WorkerPids()), w.Kong.ErrorLog())
		}
	}
	runScenarios(t, w, scenarios)
}

// The Docker image's way: subgate-pluginservers starts the servers, waits
// for their sockets, then runs Kong in the foreground; `kong stop` ends Kong,
// the supervisor then stops the servers and exits with Kong's status, and no
// process is left behind.
func TestKongUnderTheSupervisorStopsClean(t *testing.T) {
	exe := realkong.Require(t)
	bin := binaries(t)
	sup := filepath.Join(bin, "subgate-pluginservers")
	if _, err := os.Stat(sup); err != nil {
		t.Skipf("%s not built (make build): %v", sup, err)
	}
	dir, err := os.MkdirTemp("/tmp", "subgate-docker-shape-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	d, err := stack.LoadDeployment("../kong/plugins.env", bin, dir, "jwt-claims", "subgate")
	if err != nil {
		t.Fatal(err)
	}
	k, err := realkong.Prepare(realkong.Options{Exe: exe, Env: d.Env, DeclarativeConfig: []byte(`_format_version: "3.0"
services:
  - name: s
    url: http://127.0.0.1:1
    routes:
      - name: r
        paths: [/r]
        plugins:
          - name: jwt-claims
            config: {keys: [{kid: hs, algorithm: HS256, secret: "0123456789abcdef0123456789abcdef"}]}
`), Settings: map[string]string{"nginx_daemon": "off"}})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sup, "--", exe, "start")
	cmd.Env = k.Env()
	out := &stack.Output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if err := k.WaitReady(30 * time.Second); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// The first request: a 401 from the plugin, not a 500 from a missing socket.
	if status, _, body := send(t, k.ProxyURL, "GET", "/r", nil); status != 401 {
		t.Fatalf("first request: %d %s", status, body)
	}
	pids := regexp.MustCompile(`started, pid (\d+)`).FindAllStringSubmatch(out.String(), -1)
	if len(pids) != 2 {
		t.Fatalf("want 2 plugin servers started:\n%s", out)
	}
	if _, err := k.Run("stop", "-p", k.Prefix); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the supervisor exited with %v (Kong's status)\n%s", err, out)
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("the supervisor did not exit after kong stop\n%s", out)
	}
	for _, m := range pids {
		pid, _ := strconv.Atoi(m[1])
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("plugin server %d still runs", pid)
		}
	}
	if left := k.Processes(); len(left) > 0 {
		t.Errorf("Kong processes left: %v", left)
	}
	if !strings.Contains(out.String(), "kong exited (status 0): stopping the plugin servers") {
		t.Errorf("output:\n%s", out)
	}
}

func jsonDecode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// Kong started as root with its workers as nobody (Kong's default
// nginx_user falls back to nobody when there is no kong user): the workers
// must open the prefix's LMDB and dial the plugin sockets. What it takes:
// the prefix owned by nobody, and the plugin servers run as nobody by
// subgate-pluginservers -user nobody (their sockets, in a directory nobody
// may write, are then nobody's). The README says the same.
func TestKongAsRootWithWorkersAsNobody(t *testing.T) {
	kong := realkong.Require(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	cred, err := supervise.Credential("nobody")
	if err != nil {
		t.Skip(err)
	}
	// An official package installs Kong where every user may read it; a
	// kit built under a home directory of mode 0700 is not (.ci/run opens
	// the directories above it for traversal).
	for dir := filepath.Dir(kong); dir != "/"; dir = filepath.Dir(dir) {
		if st, err := os.Stat(dir); err != nil || st.Mode().Perm()&0o001 == 0 {
			if os.Getenv("SUBGATE_REQUIRE_KONG") == "1" {
				t.Fatalf("%s is not searchable by other users: Kong's workers as nobody cannot load Kong from %s (chmod o+x %s)", dir, kong, dir)
			}
			t.Skipf("%s is not searchable by other users: Kong's workers as nobody cannot load Kong from %s", dir, kong)
		}
	}
	prefix, err := os.MkdirTemp("/tmp", "kong-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(prefix) }) // after the Kong in it has stopped (cleanups run last first)
	if err := os.Chown(prefix, int(cred.Uid), int(cred.Gid)); err != nil {
		t.Fatal(err)
	}
	e := startEdge(t, stack.EdgeOptions{Plugins: []string{"jwt-claims"}, Kong: kong, Credential: cred, KongUser: "nobody",
		KongPrefix: filepath.Join(prefix, "kong"), KongYML: []byte(`_format_version: "3.0"
services:
  - name: s
    url: http://127.0.0.1:1
    routes:
      - name: r
        paths: [/r]
        plugins:
          - name: jwt-claims
            config: {keys: [{kid: hs, algorithm: HS256, secret: "0123456789abcdef0123456789abcdef"}]}
`)})
	for _, pid := range e.Kong.WorkerPids() {
		st, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid)))
		if err != nil || st.Sys().(*syscall.Stat_t).Uid != cred.Uid {
			t.Fatalf("worker %d does not run as nobody", pid)
		}
	}
	if st, err := os.Stat(filepath.Join("/proc", strconv.Itoa(e.Pid("jwt-claims")))); err != nil || st.Sys().(*syscall.Stat_t).Uid != cred.Uid {
		t.Fatal("the plugin server does not run as nobody")
	}
	if status, _, body := send(t, e.URL, "GET", "/r", nil); status != 401 || !strings.Contains(string(body), "token_missing") {
		t.Fatalf("through workers as nobody: %d %s\n%s", status, body, e.Kong.ErrorLog())
	}
}
