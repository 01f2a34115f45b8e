package redistest

import (
	"errors"
	"net"
	"testing"
)

// A server whose port was taken between freeAddr and its start exits at
// once; start says so (ErrExited), which is what Launch retries on, instead
// of waiting 10 s for a PING that cannot come.
func TestStartReportsAServerThatExited(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, port, _ := net.SplitHostPort(taken.Addr().String())
	s := &Server{Addr: taken.Addr().String(), Dir: t.TempDir(), bin: binary(t),
		args: []string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}}
	s.args = append(s.args, "--dir", s.Dir)
	if err := s.start(); !errors.Is(err, ErrExited) {
		s.Stop()
		t.Fatalf("start on a taken port: %v, want ErrExited", err)
	}
	if ok := Start(t); ok.Addr == "" {
		t.Fatal("Launch gave no address")
	}
}
