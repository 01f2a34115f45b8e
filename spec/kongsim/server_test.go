package kongsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/subgate/subgate/pkg/supervise"
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

// startProbe runs the probe as the deployment runs plugin servers
// (supervised, outside Kong) and returns Kong's side of it.
func startProbe(t *testing.T, log *ErrorLog) (*Server, *supervise.Supervisor) {
	t.Helper()
	prefix, err := PrefixDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(prefix) })
	s, sup, err := Supervised(probeBin, prefix, nil, supervise.Options{Output: io.Discard}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sup.Stop(5 * time.Second) })
	return s, sup
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

// The plugin's kong.log.* calls land in Kong's error log, each at its
// level; a server that cannot be reached is an error Kong logs.
func TestPDKLogsInKongsErrorLog(t *testing.T) {
	log := NewErrorLog(0)
	if log.Level() != LogNotice {
		t.Fatalf("default level %v, want Kong's notice", log.Level())
	}
	s, sup := startProbe(t, log)
	seq := probe(t, s).Seq
	at := func(l Level) string { return log.SeenAt(l) }
	for _, c := range []struct {
		level Level
		shown []string
		not   []string
	}{
		{LogNotice, []string{fmt.Sprintf("[error] [kong] pb_rpc.lua:233 probe err %d", seq), fmt.Sprintf("[notice] [kong] pb_rpc.lua:233 probe notice %d", seq)},
			[]string{"probe stdout", "probe info", "probe debug"}},
		{LogInfo, []string{fmt.Sprintf("probe info %d", seq)}, []string{"probe debug", "started plugin server"}},
		{LogDebug, []string{fmt.Sprintf("probe debug %d", seq), fmt.Sprintf("started plugin server: seq %d", seq)}, nil},
		{LogErr, []string{fmt.Sprintf("probe err %d", seq)}, []string{"probe notice"}},
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
	sup.Stop(5 * time.Second)
	s.Drop()
	if err := s.HandleEvent(1, "access", NewRequest("GET", "/", "", http.Header{})); err == nil {
		t.Fatal("an event on a stopped server succeeded")
	}
	if !strings.Contains(log.Seen(), "[error] [kong] pb_rpc.lua:273 trying to connect: ") {
		t.Fatalf("no connect error in the log:\n%s", log.Seen())
	}
}
