// Package redistest starts a real redis-server on a free loopback port for
// integration tests and stops it when the test ends. Unit tests use
// miniredis; these tests exist to prove the code against the real server.
//
// When redis-server is not installed the test is skipped, unless
// SUBGATE_REQUIRE_REDIS=1 (set by `make test` and so by CI), where it fails:
// CI must never pass by skipping the real thing.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Server is a running redis-server.
type Server struct {
	Addr string
	Dir  string
	cmd  *exec.Cmd
	args []string
}

// Start runs redis-server with persistence off (tests want speed, not
// durability) and extra "--name value" arguments appended.
func Start(tb testing.TB, extra ...string) *Server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("SUBGATE_REQUIRE_REDIS") == "1" {
			tb.Fatalf("redis-server not found and SUBGATE_REQUIRE_REDIS=1: %v", err)
		}
		tb.Skip("redis-server not installed; integration test skipped (set SUBGATE_REQUIRE_REDIS=1 to fail instead)")
	}
	dir := tb.TempDir()
	s := &Server{Dir: dir, args: append([]string{bin}, extra...)}
	s.Addr = freeAddr(tb)
	s.start(tb)
	tb.Cleanup(s.Stop)
	return s
}

func (s *Server) start(tb testing.TB) {
	tb.Helper()
	_, port, _ := net.SplitHostPort(s.Addr)
	args := []string{"--port", port, "--bind", "127.0.0.1", "--dir", s.Dir,
		"--save", "", "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning"}
	args = append(args, s.args[1:]...)
	cmd := exec.Command(s.args[0], args...)
	logf, err := os.Create(filepath.Join(s.Dir, "redis.log"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting redis-server: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if pingOK(s.Addr) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Stop()
	log, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	tb.Fatalf("redis-server did not answer PING on %s within 10s; log:\n%s", s.Addr, log)
}

// Stop kills the server (idempotent). Used to simulate an outage.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// Restart starts the server again on the same address after Stop.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Stop()
	s.start(tb)
}

func pingOK(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := fmt.Fprint(c, "PING\r\n"); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

func freeAddr(tb testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// StartSentinel runs a Sentinel (redis-server --sentinel) on a free port
// that monitors master under name, with a quorum of one. Plugins configured
// with master_name then find the master through it, as in production.
func StartSentinel(tb testing.TB, master *Server, name string) *Server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Skip("redis-server not installed")
	}
	dir := tb.TempDir()
	addr := freeAddr(tb)
	_, port, _ := net.SplitHostPort(addr)
	mhost, mport, _ := net.SplitHostPort(master.Addr)
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("port %s\nbind 127.0.0.1\ndir %s\nsentinel monitor %s %s %s 1\nsentinel down-after-milliseconds %s 5000\n",
		port, dir, name, mhost, mport, name)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, conf, "--sentinel")
	logf, err := os.Create(filepath.Join(dir, "sentinel.log"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting sentinel: %v", err)
	}
	s := &Server{Addr: addr, Dir: dir, cmd: cmd}
	tb.Cleanup(s.Stop)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if pingOK(addr) {
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Stop()
	tb.Fatalf("sentinel did not answer on %s", addr)
	return nil
}
