// Package kongsim plays Kong's side of go-pdk's "ProtoBuf:1" plugin-server
// protocol, as Kong's own kong/runloop/plugin_servers (pb_rpc.lua,
// plugin.lua, process.lua) does, so the compiled plugin binaries can be
// driven without Kong: query a binary with -dump, start it with
// -kong-prefix, start instances with the config Kong would send, and run
// events while answering each PDK call from a request model.
package kongsim

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/proto"
)

// Info is a plugin's -dump output, as Kong's process.lua reads it.
type Info struct {
	Name     string
	Phases   []string
	Version  string
	Priority int
	Schema   struct {
		Name   string                       `json:"name"`
		Fields []map[string]json.RawMessage `json:"fields"`
	}
}

type dump struct {
	Protocol   string
	SocketPath string
	Plugins    []Info
}

// Dump runs `bin -kong-prefix prefix -dump` (Kong's query_cmd) and checks
// what Kong checks: the protocol, one plugin, named as the binary.
func Dump(bin, prefix string) (Info, string, error) {
	out, err := exec.Command(bin, "-kong-prefix", prefix, "-dump").Output()
	if err != nil {
		return Info{}, "", fmt.Errorf("%s -dump: %w", bin, err)
	}
	var d dump
	if err := json.Unmarshal(out, &d); err != nil {
		return Info{}, "", fmt.Errorf("%s -dump printed no JSON: %w", bin, err)
	}
	if d.Protocol != "ProtoBuf:1" {
		return Info{}, "", fmt.Errorf("%s speaks %q, Kong expects ProtoBuf:1", bin, d.Protocol)
	}
	if len(d.Plugins) != 1 || d.Plugins[0].Name != filepath.Base(bin) {
		return Info{}, "", fmt.Errorf("%s -dump: want one plugin named as the binary, got %+v", bin, d.Plugins)
	}
	return d.Plugins[0], d.SocketPath, nil
}

// Server is one running plugin server process.
type Server struct {
	Info   Info
	bin    string
	prefix string
	socket string
	seq    atomic.Int64

	mu  sync.Mutex
	cmd *exec.Cmd
	log *lockedWriter // stdout and stderr, one lock

	idle chan net.Conn // kept-alive connections, as Kong's c:setkeepalive() pools them
}

// Start queries and starts bin under prefix and waits for its socket.
func Start(bin, prefix string) (*Server, error) {
	info, socket, err := Dump(bin, prefix)
	if err != nil {
		return nil, err
	}
	s := &Server{Info: info, bin: bin, prefix: prefix, socket: socket, idle: make(chan net.Conn, 64)}
	if want := filepath.Join(prefix, info.Name+".socket"); socket != want {
		return nil, fmt.Errorf("%s: socket %s, Kong expects %s", bin, socket, want)
	}
	return s, s.start()
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(s.bin, "-kong-prefix", s.prefix)
	if s.log == nil { // kept across restarts: the whole history
		s.log = &lockedWriter{}
	}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", s.socket); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("%s: no socket at %s after 10s", s.Info.Name, s.socket)
}

// Kill ends the process abruptly, as a crash would.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.idle) > 0 {
		(<-s.idle).Close()
	}
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// Restart starts the process again after Kill (Kong's process.lua respawns
// a plugin server that exits).
func (s *Server) Restart() error {
	s.Kill()
	return s.start()
}

// Output is what the plugin server wrote to stdout/stderr (Kong copies it
// into its error log): the audit lines.
func (s *Server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

type lockedWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// StartInstance sends cmd_start_instance with the config JSON and returns
// the instance id.
func (s *Server) StartInstance(config []byte) (int32, error) {
	c, err := net.Dial("unix", s.socket)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	seq := s.seq.Add(1)
	if err := writeMsg(c, &pb.RpcCall{Sequence: seq, Call: &pb.RpcCall_CmdStartInstance{
		CmdStartInstance: &pb.CmdStartInstance{Name: s.Info.Name, Config: config}}}); err != nil {
		return 0, err
	}
	var ret pb.RpcReturn
	if err := readMsg(c, &ret); err != nil {
		return 0, fmt.Errorf("start instance: %w", err) // go-pdk closes the connection on a config error
	}
	st := ret.GetInstanceStatus()
	if ret.Sequence != seq || st == nil {
		return 0, fmt.Errorf("start instance: unexpected return %v", &ret)
	}
	return st.InstanceId, nil
}

// ErrExited is returned by HandleEvent when the plugin called
// kong.response.exit: Kong's exit yields the handler's coroutine and never
// answers that call, and the chain stops.
var ErrExited = errors.New("kong.response.exit")

// HandleEvent runs one phase of one instance for req, answering every PDK
// call the plugin makes and counting them on req under the plugin's name.
func (s *Server) HandleEvent(instance int32, phase string, req *Request) error {
	c, err := s.conn()
	if err != nil {
		return err
	}
	keep := false
	defer func() {
		if !keep {
			c.Close()
		}
	}()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	seq := s.seq.Add(1)
	if err := writeMsg(c, &pb.RpcCall{Sequence: seq, Call: &pb.RpcCall_CmdHandleEvent{
		CmdHandleEvent: &pb.CmdHandleEvent{InstanceId: instance, EventName: phase}}}); err != nil {
		return err
	}
	for {
		method, err := readFrame(c)
		if err != nil {
			return err
		}
		if len(method) == 0 {
			break // the event is over; the RpcReturn follows
		}
		args, err := readFrame(c)
		if err != nil {
			return err
		}
		reply, err := req.call(s.Info.Name, string(method), args)
		if errors.Is(err, ErrExited) {
			return ErrExited // the connection is dropped unanswered, as Kong's yield leaves it
		}
		if err != nil {
			return err
		}
		if err := writeFrame(c, reply); err != nil {
			return err
		}
	}
	var ret pb.RpcReturn
	if err := readMsg(c, &ret); err != nil {
		return err
	}
	if ret.Sequence != seq {
		return fmt.Errorf("event return has sequence %d, want %d", ret.Sequence, seq)
	}
	select { // a cleanly finished event leaves the connection reusable
	case s.idle <- c:
		keep = true
	default:
	}
	return nil
}

// conn takes a pooled connection or dials a new one.
func (s *Server) conn() (net.Conn, error) {
	select {
	case c := <-s.idle:
		return c, nil
	default:
		return net.Dial("unix", s.socket)
	}
}

// Frames: a little-endian uint32 length, then the bytes.
func writeFrame(w io.Writer, b []byte) error {
	var n [4]byte
	binary.LittleEndian.PutUint32(n[:], uint32(len(b)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

func readFrame(r io.Reader) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, fmt.Errorf("closed: %w", err)
	}
	b := make([]byte, binary.LittleEndian.Uint32(n[:]))
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("closed: %w", err)
	}
	return b, nil
}

func writeMsg(w io.Writer, m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return writeFrame(w, b)
}

func readMsg(r io.Reader, m proto.Message) error {
	b, err := readFrame(r)
	if err != nil {
		return err
	}
	return proto.Unmarshal(b, m)
}

// PrefixDir makes a fresh Kong prefix directory (sockets live there).
// Unix socket paths are limited to ~107 bytes, so it sits under /tmp.
func PrefixDir() (string, error) { return os.MkdirTemp("/tmp", "kongsim-") }
