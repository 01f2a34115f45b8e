package kongx_test

import (
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
)

// A plugin server started with -metrics-addr answers GET /live and GET
// /ready there: ready before any instance is asked for, not ready once the
// only instance start failed (its error in the body), ready again once one
// starts without error.
func TestHealthEndpoints(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "probe")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/probe").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	srv := exec.Command(bin, "-kong-prefix", dir, "-metrics-addr", addr)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var conn net.Conn
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("unix", filepath.Join(dir, "probe.socket"))
		if status, _ := get("/live"); err == nil && status == 200 {
			conn = c
			break
		}
		if c != nil {
			c.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("no socket or no /live: %v", err)
		}
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if status, body := get("/ready"); status != 200 || body != "ready\nok config\n" {
		t.Fatalf("before any instance: %d %q", status, body)
	}
	start := func(seq int64, config string) {
		send(t, conn, &pb.RpcCall{Sequence: seq, Call: &pb.RpcCall_CmdStartInstance{CmdStartInstance: &pb.CmdStartInstance{
			Name: "probe", Config: []byte(config)}}})
		var started pb.RpcReturn
		receive(t, conn, &started)
	}
	start(1, `{"header":5,"__seq__":1}`)
	if status, body := get("/ready"); status != 503 || !strings.Contains(body, "fail config: 1 instance starts, none without error; last: ") ||
		!strings.Contains(body, "header") {
		t.Fatalf("after a refused config: %d %q", status, body)
	}
	start(2, `{"header":"X-Good","__seq__":2}`)
	if status, body := get("/ready"); status != 200 {
		t.Fatalf("after a good config: %d %q", status, body)
	}
	if status, _ := get("/metrics"); status != 200 {
		t.Fatalf("/metrics: %d", status)
	}
}
