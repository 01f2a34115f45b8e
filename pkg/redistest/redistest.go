// Package redistest starts a real redis-server (and Sentinel) on free
// loopback ports: for integration tests, which stop it when the test ends,
// and for the local demo. Unit tests use miniredis; these exist to prove
// the code against the real server.
//
// In tests, when redis-server is not installed the test is skipped, unless
// SUBGATE_REQUIRE_REDIS=1 (set by `make test` and so by CI), where it fails:
// CI must never pass by skipping the real thing.
package redistest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Server is a running redis-server or Sentinel.
type Server struct {
	Addr   string
	Dir    string
	args   []string // command line after the binary, to restart
	bin    string
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited (its one Wait)
	tls    *tls.Config   // how to reach Addr (nil: plain TCP)
}

// Launch runs redis-server from bin in dir on a free loopback port, with
// persistence off (tests and demos want speed, not durability) and extra
// "--name value" arguments appended.
//
// A free port is free only until someone binds it: tests in other packages
// pick ports at the same time, so a server that exits at start (its port
// taken meanwhile) is started again on another port, a few times.
func Launch(bin, dir string, extra ...string) (*Server, error) {
	return launch(bin, dir, nil, func() ([]string, error) { return extra, nil })
}

// TLSOptions say how a TLS server is set up (see StartTLS).
type TLSOptions struct {
	CertFile, KeyFile string // the server's certificate and key (PEM)
	// CAFile verifies client certificates; with RequireClient set, a
	// client without one this CA issued is refused at the handshake.
	CAFile        string
	RequireClient bool
	// Client is how the harness itself reaches the server to see it answer
	// (trusting the server, with a client certificate when required).
	Client *tls.Config
}

// LaunchTLS is Launch with TLS only: the address is redis-server's
// tls-port, and its plain port is off.
func LaunchTLS(bin, dir string, o TLSOptions, extra ...string) (*Server, error) {
	auth := "no"
	if o.RequireClient {
		auth = "yes"
	}
	args := append([]string{"--tls-cert-file", o.CertFile, "--tls-key-file", o.KeyFile, "--tls-ca-cert-file", o.CAFile,
		"--tls-auth-clients", auth}, extra...)
	return launch(bin, dir, o.Client, func() ([]string, error) { return args, nil })
}

// StartTLS runs a TLS-only redis-server for a test (see LaunchTLS).
func StartTLS(tb testing.TB, o TLSOptions, extra ...string) *Server {
	tb.Helper()
	s, err := LaunchTLS(binary(tb), tb.TempDir(), o, extra...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// launch is Launch with the extra arguments made anew for each attempt (a
// cluster node picks a new cluster-bus port too); with tc, the port is
// redis-server's tls-port (the plain port off), reached with tc.
func launch(bin, dir string, tc *tls.Config, extra func() ([]string, error)) (*Server, error) {
	var err error
	for range 5 {
		var addr string
		var more []string
		if addr, err = freeAddr(); err != nil {
			return nil, err
		}
		if more, err = extra(); err != nil {
			return nil, err
		}
		_, port, _ := net.SplitHostPort(addr)
		ports := []string{"--port", port}
		if tc != nil {
			ports = []string{"--port", "0", "--tls-port", port}
		}
		args := append(append(ports, "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning"), more...)
		s := &Server{Addr: addr, Dir: dir, bin: bin, args: args, tls: tc}
		if err = s.start(); !errors.Is(err, ErrExited) {
			return s, err
		}
	}
	return nil, err
}

// ErrExited is a server that exited while starting (a port taken, a bad
// argument): its log says why.
var ErrExited = errors.New("redistest: the server exited while starting")

// LaunchSentinel runs a Sentinel in dir that monitors master under name with
// a quorum of one; clients configured with that master name find the master
// through it, as in production.
func LaunchSentinel(bin, dir string, master *Server, name string) (*Server, error) {
	return LaunchSentinelTLS(bin, dir, master, name, nil)
}

// LaunchSentinelTLS is LaunchSentinel with TLS (o nil: none): the Sentinel
// listens with TLS only, requires client certificates as o says, and
// reaches the TLS master with its certificate as its client certificate.
func LaunchSentinelTLS(bin, dir string, master *Server, name string, o *TLSOptions) (*Server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	mhost, mport, _ := net.SplitHostPort(master.Addr)
	conf := filepath.Join(dir, "sentinel.conf")
	listen := "port " + port + "\n"
	var tc *tls.Config
	if o != nil {
		auth := "no"
		if o.RequireClient {
			auth = "yes"
		}
		listen = fmt.Sprintf("port 0\ntls-port %s\ntls-replication yes\ntls-auth-clients %s\ntls-cert-file %s\ntls-key-file %s\ntls-ca-cert-file %s\n",
			port, auth, o.CertFile, o.KeyFile, o.CAFile)
		tc = o.Client
	}
	body := fmt.Sprintf("%sbind 127.0.0.1\ndir %s\nsentinel monitor %s %s %s 1\nsentinel down-after-milliseconds %s 5000\n",
		listen, dir, name, mhost, mport, name)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, err
	}
	s := &Server{Addr: addr, Dir: dir, bin: bin, args: []string{conf, "--sentinel"}, tls: tc}
	return s, s.start()
}

func (s *Server) start() error {
	cmd := exec.Command(s.bin, s.args...)
	logf, err := os.OpenFile(filepath.Join(s.Dir, "redis.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			s.cmd = nil
			log, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
			return fmt.Errorf("%w: %s on %s; log:\n%s", ErrExited, s.bin, s.Addr, log)
		default:
		}
		if pingOK(s.Addr, s.tls) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Stop()
	log, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	return fmt.Errorf("%s did not answer PING on %s within 10s; log:\n%s", s.bin, s.Addr, log)
}

// Stop kills the server (idempotent). Tests use it to simulate an outage.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		<-s.exited
		s.cmd = nil
	}
}

// Start runs redis-server for a test and stops it when the test ends.
func Start(tb testing.TB, extra ...string) *Server {
	tb.Helper()
	s, err := Launch(binary(tb), tb.TempDir(), extra...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// StartSentinel runs a Sentinel for master for a test.
func StartSentinel(tb testing.TB, master *Server, name string) *Server {
	tb.Helper()
	s, err := LaunchSentinel(binary(tb), tb.TempDir(), master, name)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// StartSentinelTLS runs a TLS Sentinel for master for a test (see
// LaunchSentinelTLS).
func StartSentinelTLS(tb testing.TB, master *Server, name string, o TLSOptions) *Server {
	tb.Helper()
	s, err := LaunchSentinelTLS(binary(tb), tb.TempDir(), master, name, &o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// Restart starts the server again on the same address after Stop.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		tb.Fatal(err)
	}
}

func binary(tb testing.TB) string {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("SUBGATE_REQUIRE_REDIS") == "1" {
			tb.Fatalf("redis-server not found and SUBGATE_REQUIRE_REDIS=1: %v", err)
		}
		tb.Skip("redis-server not installed; integration test skipped (set SUBGATE_REQUIRE_REDIS=1 to fail instead)")
	}
	return bin
}

func pingOK(addr string, tc *tls.Config) bool {
	var c net.Conn
	var err error
	if tc != nil {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: 200 * time.Millisecond}, "tcp", addr, tc)
	} else {
		c, err = net.DialTimeout("tcp", addr, 200*time.Millisecond)
	}
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

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
