package kongsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

// probeBin is the test-only plugin server in testdata/probe, built once
// for the package's tests.
var probeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kongsim-test-")
	if err != nil {
		panic(err)
	}
	probeBin = filepath.Join(dir, "probe")
	if out, err := exec.Command("go", "build", "-o", probeBin, "./testdata/probe").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		panic(fmt.Sprintf("building the probe: %v\n%s", err, out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func startProbe(t *testing.T, o Options) *Server {
	t.Helper()
	prefix, err := PrefixDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(prefix) })
	s, err := Start(probeBin, prefix, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	return s
}

// probeAnswer is testdata/probe's exit body.
type probeAnswer struct {
	Env []string `json:"env"`
	Pid int      `json:"pid"`
	Seq int      `json:"seq"`
}

var probeSeq atomic.Int64

// probe starts an instance and runs one access event on it.
func probe(t *testing.T, s *Server) probeAnswer {
	t.Helper()
	seq := int(probeSeq.Add(1))
	conf, err := EncodeConfig(s.Info, map[string]any{}, Meta{RouteID: "r", PluginID: "p", Seq: seq})
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.StartInstance(conf)
	if err != nil {
		t.Fatal(err)
	}
	req := NewRequest("GET", "/", "", http.Header{})
	if err := s.HandleEvent(id, "access", req); !errors.Is(err, ErrExited) {
		t.Fatalf("event: %v, want the probe's exit", err)
	}
	var a probeAnswer
	if err := json.Unmarshal(req.Exited().Body, &a); err != nil || a.Seq != seq {
		t.Fatalf("probe answered %s (%v), want seq %d", req.Exited().Body, err, seq)
	}
	return a
}

func TestWorkerEnvAsNginx(t *testing.T) {
	parent := map[string]string{"TZ": "Europe/Berlin", "A": "a", "B": "b", "PATH": "/bin", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := parent[k]; return v, ok }
	got, err := WorkerEnv([]string{"A", "C=set", "MISSING", "EMPTY"}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"A=a", "C=set", "EMPTY=", "TZ=Europe/Berlin"}; !slices.Equal(got, want) {
		t.Fatalf("WorkerEnv = %q, want %q (TZ always, declared names only)", got, want)
	}
	delete(parent, "TZ")
	if got, _ := WorkerEnv(nil, lookup); len(got) != 0 {
		t.Fatalf("nothing declared and no TZ: got %q, want an empty environment", got)
	}
	if _, err := WorkerEnv([]string{"=x"}, lookup); err == nil {
		t.Fatal("an empty name was accepted")
	}
}

func TestParseMainEnvAsNginxReadsKongsLine(t *testing.T) {
	for value, want := range map[string][]string{
		"SUBGATE_X":                    {"SUBGATE_X"},
		"SUBGATE_X; env OTHER":         {"SUBGATE_X", "OTHER"},
		"SUBGATE_X;env OTHER=v; env Z": {"SUBGATE_X", "OTHER=v", "Z"},
	} {
		got, err := ParseMainEnv(value)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseMainEnv(%q) = %q, %v; want %q", value, got, err, want)
		}
	}
	// Kong writes `env <value>;`: a bare second name is an unknown directive.
	for _, bad := range []string{"SUBGATE_X; OTHER", "A B", ""} {
		if got, err := ParseMainEnv(bad); err == nil {
			t.Errorf("ParseMainEnv(%q) = %q, want nginx's refusal", bad, got)
		}
	}
}

// A plugin server sees TZ and the declared names, nothing else of the
// environment it was started from (besides what /bin/sh -c itself exports).
func TestServerStartsWithTheWorkersEnvironment(t *testing.T) {
	t.Setenv("SUBGATE_DECLARED", "declared-value")
	t.Setenv("SUBGATE_UNDECLARED", "must-not-pass")
	t.Setenv("TZ", "Europe/Berlin")
	s := startProbe(t, Options{Env: []string{"SUBGATE_DECLARED", "SUBGATE_GIVEN=given-value", "SUBGATE_NOT_SET_ANYWHERE"}})
	want := []string{"SUBGATE_DECLARED=declared-value", "SUBGATE_GIVEN=given-value", "TZ=Europe/Berlin"}
	if !slices.Equal(s.Env(), want) {
		t.Fatalf("server env %q, want %q", s.Env(), want)
	}
	got := probe(t, s).Env
	for _, kv := range want {
		if !slices.Contains(got, kv) {
			t.Errorf("%s did not reach the plugin server: %q", kv, got)
		}
	}
	shell := map[string]bool{"PWD": true, "OLDPWD": true, "SHLVL": true, "_": true} // exported by /bin/sh -c itself
	for _, kv := range got {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(want, kv) && !shell[name] {
			t.Errorf("%s reached the plugin server without an env declaration", kv)
		}
	}
}

// Output and PDK logs land in one error log, each at its level.
func TestServerOutputAndPDKLogsInKongsErrorLog(t *testing.T) {
	log := NewErrorLog(0)
	if log.Level() != LogNotice {
		t.Fatalf("default level %v, want Kong's notice", log.Level())
	}
	s := startProbe(t, Options{Log: log})
	pid := s.Pid()
	a := probe(t, s)
	if a.Pid != pid {
		t.Fatalf("the process Kong spawned has pid %d, the plugin reports %d (exec must replace the shell)", pid, a.Pid)
	}
	s.Kill() // waits until the output is drained
	seq := a.Seq

	// The raw output: stdout and stderr merged in write order, go-pdk's own
	// log line (stderr) included.
	out := s.Output()
	so, se := strings.Index(out, fmt.Sprintf("probe stdout seq=%d\n", seq)), strings.Index(out, fmt.Sprintf("probe stderr seq=%d\n", seq))
	if so < 0 || se < so || !strings.Contains(out, "Listening on socket: ") {
		t.Fatalf("raw output:\n%s", out)
	}
	var lines int
	for _, e := range log.Entries() {
		if e.Source != "probe" || !strings.HasPrefix(e.Text, "[probe:") {
			continue
		}
		lines++
		if e.Level != LogInfo || !strings.HasPrefix(e.Text, fmt.Sprintf("[probe:%d] ", pid)) {
			t.Errorf("output line %v: want level info and prefix [probe:%d]", e, pid)
		}
	}
	if lines != strings.Count(out, "\n") {
		t.Errorf("%d output lines in the error log, %d in the output", lines, strings.Count(out, "\n"))
	}

	at := func(l Level) string { return log.SeenAt(l) }
	stdout := fmt.Sprintf("[info] [probe:%d] probe stdout seq=%d", pid, seq)
	for _, c := range []struct {
		level Level
		shown []string
		not   []string
	}{
		{LogNotice,
			[]string{fmt.Sprintf("[error] [kong] pb_rpc.lua [probe] probe err %d", seq), fmt.Sprintf("[notice] [kong] pb_rpc.lua [probe] probe notice %d", seq),
				fmt.Sprintf("[pluginserver] started, pid %d", pid), "external pluginserver 'probe' terminated: signal 9"},
			[]string{"probe stdout", "probe stderr", "Listening on socket", "probe info", "probe debug"}},
		{LogInfo, []string{stdout, fmt.Sprintf("probe info %d", seq)}, []string{"probe debug", "started plugin server"}},
		{LogDebug, []string{stdout, fmt.Sprintf("probe debug %d", seq), fmt.Sprintf("started plugin server: seq %d", seq)}, nil},
		{LogErr, []string{fmt.Sprintf("probe err %d", seq)}, []string{"probe notice", "[pluginserver] started"}},
	} {
		seen := at(c.level)
		for _, s := range c.shown {
			if !strings.Contains(seen, s) {
				t.Errorf("at log_level %v, %q is not shown:\n%s", c.level, s, seen)
			}
		}
		for _, s := range c.not {
			if strings.Contains(seen, s) {
				t.Errorf("at log_level %v, %q is shown:\n%s", c.level, s, seen)
			}
		}
	}
	if log.Seen() != at(LogNotice) {
		t.Error("Seen differs from SeenAt(the configured level)")
	}

	// A dead server: the connection fails, Kong logs it at error.
	if err := s.HandleEvent(1, "access", NewRequest("GET", "/", "", http.Header{})); err == nil {
		t.Fatal("an event on a killed server succeeded")
	}
	if !strings.Contains(log.Seen(), "[error] [kong] pb_rpc.lua [probe] trying to connect: ") {
		t.Fatalf("no connect error in the log:\n%s", log.Seen())
	}
}
