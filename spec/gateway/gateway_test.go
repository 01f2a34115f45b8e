package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/subgate/subgate/pkg/supervise"
	"github.com/subgate/subgate/spec/kongsim"
)

// The probe (spec/kongsim/testdata/probe) answers every access event with
// 200 and a JSON body saying which process and instance served it.
type answer struct {
	Pid int    `json:"pid"`
	Seq int    `json:"seq"`
	Tag string `json:"tag"`
}

type fixture struct {
	g   *Gateway
	srv *kongsim.Server
	sup *supervise.Supervisor
	log *kongsim.ErrorLog
}

// probeBin is the probe, built once for the package's tests.
var probeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gateway-test-")
	if err != nil {
		panic(err)
	}
	probeBin = filepath.Join(dir, "probe")
	if out, err := exec.Command("go", "build", "-o", probeBin, "../kongsim/testdata/probe").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		panic(fmt.Sprintf("building the probe: %v\n%s", err, out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// probeYML is a kong.yml with two routes running the probe; extra is added
// to route a's config.
func probeYML(extra string) string {
	return `_format_version: "3.0"
services:
  - name: s
    url: http://127.0.0.1:1
    routes:
      - name: a
        paths: [/a]
        plugins:
          - name: probe
            config: {tag: one` + extra + `}
      - name: b
        paths: [/b]
        plugins:
          - name: probe
`
}

func setup(t *testing.T, yml string) *fixture {
	t.Helper()
	prefix, err := kongsim.PrefixDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(prefix) })
	log := kongsim.NewErrorLog(0)
	srv, sup, err := kongsim.Supervised(probeBin, prefix, nil, supervise.Options{Output: io.Discard}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sup.Stop(5 * time.Second) })
	g, err := Load([]byte(yml), nil, map[string]*kongsim.Server{"probe": srv}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.Log = log
	return &fixture{g: g, srv: srv, sup: sup, log: log}
}

// get sends one request through the gateway; the answer is decoded when
// the probe gave it.
func (f *fixture) get(path string) (int, answer) {
	w := httptest.NewRecorder()
	f.g.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
	var a answer
	if w.Code == 200 {
		_ = json.Unmarshal(w.Body.Bytes(), &a)
	}
	return w.Code, a
}

func (f *fixture) mustGet(t *testing.T, path string) answer {
	t.Helper()
	code, a := f.get(path)
	if code != 200 || a.Pid == 0 {
		t.Fatalf("GET %s: %d, want the probe's 200\nerror log:\n%s", path, code, f.log.SeenAt(kongsim.LogDebug))
	}
	return a
}

// starts counts the instances started (pb_rpc.lua's debug line).
func (f *fixture) starts() int {
	return strings.Count(f.log.SeenAt(kongsim.LogDebug), "started plugin server: seq")
}

func TestLoadStartsNoInstanceTheFirstRequestDoes(t *testing.T) {
	f := setup(t, probeYML(""))
	if n := f.starts(); n != 0 {
		t.Fatalf("Load started %d instances; Kong starts none before a request", n)
	}
	a1 := f.mustGet(t, "/a")
	if f.starts() != 1 {
		t.Fatalf("%d instances after the first request, want 1", f.starts())
	}
	if again := f.mustGet(t, "/a"); again.Seq != a1.Seq || f.starts() != 1 {
		t.Fatalf("the second request to /a started another instance (seq %d, then %d; %d starts)", a1.Seq, again.Seq, f.starts())
	}
	b := f.mustGet(t, "/b")
	if b.Seq == a1.Seq || f.starts() != 2 {
		t.Fatalf("route b shares route a's instance (seq %d and %d; %d starts)", a1.Seq, b.Seq, f.starts())
	}
}

func TestConcurrentFirstRequestsWaitForOneStart(t *testing.T) {
	f := setup(t, probeYML(", start_delay_ms: 300"))
	const n = 8
	var wg sync.WaitGroup
	codes := make([]int, n)
	seqs := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var a answer
			codes[i], a = f.get("/a")
			seqs[i] = a.Seq
		}()
	}
	wg.Wait()
	for i := range n {
		if codes[i] != 200 || seqs[i] != seqs[0] {
			t.Fatalf("request %d: %d seq %d (first: seq %d)\n%s", i, codes[i], seqs[i], seqs[0], f.log.SeenAt(kongsim.LogDebug))
		}
	}
	if f.starts() != 1 {
		t.Fatalf("%d concurrent first requests started %d instances, want 1 (the others wait)", n, f.starts())
	}
}

// A request waits at most Kong's 10 s (100 polls of 0.1 s, plus the one
// that finds the limit passed) for another request's start; then it fails
// with 500 and drops the claim, so a later request starts its own.
func TestWaitingForAStartGivesUpAfterKongsLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("takes Kong's 10 s wait limit")
	}
	t.Parallel()
	// Kong counts polls, not time: on a loaded machine 100 sleeps of 0.1 s
	// overshoot, so the start takes well past 10 s (CI saw 0.5 s fall short).
	f := setup(t, probeYML(", start_delay_ms: 13000"))
	first := make(chan int)
	go func() { code, _ := f.get("/a"); first <- code }()
	for claimed := false; !claimed; time.Sleep(5 * time.Millisecond) {
		f.g.imu.Lock()
		in := f.g.instances["plugin-a-probe"]
		claimed = in != nil && !in.started
		f.g.imu.Unlock()
	}
	code, _ := f.get("/a")
	if code != 500 {
		t.Fatalf("a request waiting past Kong's limit got %d, want 500", code)
	}
	if !strings.Contains(f.log.Seen(), "pluginserver error: Could not claim instance_id for probe (key: plugin-a-probe)") {
		t.Fatalf("no claim error in the log:\n%s", f.log.Seen())
	}
	if code := <-first; code != 200 {
		t.Fatalf("the request that started the instance got %d", code)
	}
	// The waiter dropped the claim, so the starter's instance is not
	// recorded: the next request starts another, as in Kong (the probe
	// delays only its first start).
	f.mustGet(t, "/a")
	if f.starts() != 2 {
		t.Fatalf("%d starts, want 2", f.starts())
	}
}

func TestFailedStartIs500AndTheNextRequestTriesAgain(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "fail")
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f := setup(t, probeYML(", fail_start_file: "+flag))
	for range 2 {
		if code, _ := f.get("/a"); code != 500 {
			t.Fatalf("StartInstance failed, the request got %d, want 500", code)
		}
	}
	if got := strings.Count(f.log.Seen(), "[error] [kong] plugin.lua:283 starting instance: "); got != 2 {
		t.Fatalf("%d start errors logged for two failed requests, want 2 (each request tries):\n%s", got, f.log.Seen())
	}
	if strings.Contains(f.log.SeenAt(kongsim.LogDebug), "[warn]") {
		t.Fatalf("a failed start was retried as a restartable event error:\n%s", f.log.Seen())
	}
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	f.mustGet(t, "/a")
}

func TestConfigChangeStartsANewInstanceAndClosesTheOld(t *testing.T) {
	f := setup(t, probeYML(""))
	old := f.mustGet(t, "/a")
	if err := f.g.Reload([]byte(strings.Replace(probeYML(""), "tag: one", "tag: two", 1))); err != nil {
		t.Fatal(err)
	}
	now := f.mustGet(t, "/a")
	if now.Seq <= old.Seq || now.Tag != "two" || now.Pid != old.Pid {
		t.Fatalf("after the change: %+v, before: %+v; want a new instance (new __seq__, tag two) in the same server", now, old)
	}
	// go-pdk numbers instances by __seq__: the old one is gone.
	err := f.srv.HandleEvent(int32(old.Seq), "access", kongsim.NewRequest("GET", "/a", "", http.Header{}))
	if err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("an event on the old instance: %v, want the connection closed (no plugin instance)", err)
	}
	if f.mustGet(t, "/a").Seq != now.Seq {
		t.Fatal("the new instance was not kept")
	}

	// A refused file changes nothing.
	err = f.g.Reload([]byte(strings.Replace(probeYML(""), "tag: one", "tag: 3", 1)))
	if err == nil || !strings.Contains(err.Error(), "route a") || !strings.Contains(err.Error(), "plugin probe") {
		t.Fatalf("reload with a bad config: %v, want an error naming route a and plugin probe", err)
	}
	if f.mustGet(t, "/a").Seq != now.Seq {
		t.Fatal("a refused reload changed the running config")
	}
}

func TestClosedOrMissingInstanceIsRestartedAndTheEventRetried(t *testing.T) {
	f := setup(t, probeYML(""))
	a := f.mustGet(t, "/a")
	b := f.mustGet(t, "/b")

	// go-pdk drops an instance (as its idle expiry does): "no plugin
	// instance", which reaches Kong as a closed connection.
	if err := f.srv.CloseInstance(int32(a.Seq)); err != nil {
		t.Fatal(err)
	}
	again := f.mustGet(t, "/a")
	if again.Seq != a.Seq || f.starts() != 3 {
		t.Fatalf("after the instance was dropped: %+v, %d starts; want it started again (3 starts)", again, f.starts())
	}
	if n := strings.Count(f.log.Seen(), "[warn] [kong] pb_rpc.lua:378 closed"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, f.log.Seen())
	}
	// reset_instance forgot every instance of the plugin: route b starts
	// a new one on its next request, without an error.
	f.mustGet(t, "/b")
	if f.starts() != 4 || strings.Count(f.log.Seen(), "[warn]") != 1 {
		t.Fatalf("route b after the reset: %d starts (want 4)\n%s", f.starts(), f.log.Seen())
	}

	// A server killed and respawned by its supervisor: the same, in a new
	// process (Kong meets its pooled connections closed).
	if err := syscall.Kill(f.sup.Status()[0].Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); f.sup.Status()[0].Starts < 2 || f.sup.Ready() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the probe was not respawned")
		}
	}
	after := f.mustGet(t, "/b")
	if after.Pid == b.Pid {
		t.Fatalf("answered by pid %d after the restart, the old process", after.Pid)
	}

	// A dead server: nothing to retry, 500 (route b's instance is known,
	// so the event itself fails to connect).
	f.sup.Stop(5 * time.Second)
	f.srv.Drop()
	if code, _ := f.get("/b"); code != 500 {
		t.Fatalf("with the server dead: %d, want 500", code)
	}
	seen := f.log.Seen()
	if !strings.Contains(seen, "trying to connect: ") || !strings.Contains(seen, "[error] [kong] pb_rpc.lua:382 pluginserver error: ") {
		t.Fatalf("the connect failure is not in the log:\n%s", seen)
	}
}

func TestLoadRefusesTheWholeFileNamingRouteAndPlugin(t *testing.T) {
	f := setup(t, probeYML(""))
	servers := map[string]*kongsim.Server{"probe": f.srv}
	for name, c := range map[string]struct{ yml, want string }{
		"unknown field":  {probeYML(", nope: 1"), "route a: plugin probe: "},
		"wrong type":     {probeYML(", start_delay_ms: soon"), "route a: plugin probe: "},
		"twice on route": {strings.Replace(probeYML(""), "      - name: b\n        paths: [/b]\n        plugins:\n          - name: probe\n", "      - name: b\n        paths: [/b]\n        plugins:\n          - name: probe\n          - name: probe\n", 1), "route b: plugin probe is configured twice"},
		"unknown plugin": {strings.Replace(probeYML(""), "- name: probe\n", "- name: nosuch\n", 1), "route a: plugin nosuch has no running plugin server"},
	} {
		g, err := Load([]byte(c.yml), nil, servers, nil)
		if err == nil || g != nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Load = %v, %v; want the file refused with %q", name, g, err, c.want)
		}
	}
	if f.starts() != 0 {
		t.Fatalf("loading started %d instances", f.starts())
	}
}
