package kongx_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/proto"
)

// go-pdk v0.11.2 finds a plugin's phase handlers by interface assertions on
// the value its constructor returns (server/instance.go getHandlers): the
// generic kongx.Instance must satisfy them. A binary made with
// kongx.NewPlugin alone is started as Kong starts it, given an instance and
// an access event over its socket, and must run its check: one
// set_headers call with the check's header, then the end of the event.
func TestGoPDKRunsTheGenericInstance(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "probe")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/probe").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var info struct{ Plugins []struct{ Phases []string } }
	if out, err := exec.Command(bin, "-dump").Output(); err != nil || json.Unmarshal(out, &info) != nil ||
		len(info.Plugins) != 1 || len(info.Plugins[0].Phases) != 1 || info.Plugins[0].Phases[0] != "access" {
		t.Fatalf("-dump: %v %+v", err, info)
	}
	srv := exec.Command(bin, "-kong-prefix", dir)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	var conn net.Conn
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("unix", filepath.Join(dir, "probe.socket"))
		if err == nil {
			conn = c
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no socket: %v", err)
		}
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))

	send(t, conn, &pb.RpcCall{Sequence: 1, Call: &pb.RpcCall_CmdStartInstance{CmdStartInstance: &pb.CmdStartInstance{
		Name: "probe", Config: []byte(`{"header":"X-Generic","__seq__":7}`)}}})
	var started pb.RpcReturn
	receive(t, conn, &started)
	id := started.GetInstanceStatus().GetInstanceId()
	if id != 7 {
		t.Fatalf("StartInstance returned %v", &started)
	}

	send(t, conn, &pb.RpcCall{Sequence: 2, Call: &pb.RpcCall_CmdHandleEvent{CmdHandleEvent: &pb.CmdHandleEvent{InstanceId: id, EventName: "access"}}})
	if method := frame(t, conn); string(method) != "kong.service.request.set_headers" {
		t.Fatalf("first PDK call %q, want kong.service.request.set_headers (an event go-pdk cannot route closes the connection)", method)
	}
	if args := frame(t, conn); !bytes.Contains(args, []byte("X-Generic")) || !bytes.Contains(args, []byte("generic")) {
		t.Fatalf("set_headers args %q", args)
	}
	write(t, conn, nil) // Kong's empty answer
	if end := frame(t, conn); len(end) != 0 {
		t.Fatalf("after set_headers the plugin sent %q, want the end of the event", end)
	}
	var ret pb.RpcReturn
	receive(t, conn, &ret)
	if ret.Sequence != 2 {
		t.Fatalf("event returned %v", &ret)
	}
}

func send(t *testing.T, w io.Writer, m proto.Message) {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	write(t, w, b)
}

func write(t *testing.T, w io.Writer, b []byte) {
	t.Helper()
	if err := binary.Write(w, binary.LittleEndian, uint32(len(b))); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
}

func frame(t *testing.T, r io.Reader) []byte {
	t.Helper()
	var n uint32
	if err := binary.Read(r, binary.LittleEndian, &n); err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatal(err)
	}
	return b
}

func receive(t *testing.T, r io.Reader, m proto.Message) {
	t.Helper()
	if err := proto.Unmarshal(frame(t, r), m); err != nil {
		t.Fatal(err)
	}
}
