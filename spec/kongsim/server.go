// Package kongsim plays Kong's side of go-pdk's "ProtoBuf:1" plugin-server
// protocol, as Kong's own kong/runloop/plugin_servers (pb_rpc.lua,
// plugin.lua, process.lua) does, so the compiled plugin binaries can be
// driven without Kong: query a binary with -dump, start it with
// -kong-prefix, start instances with the config Kong would send, and run
// events while answering each PDK call from a request model.
package kongsim

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

// Options say how a plugin server is started.
type Options struct {
	// Env lists the names declared with nginx's `env` directive (Kong's
	// nginx_main_env, see ParseMainEnv): "NAME" passes this process's value,
	// "NAME=value" sets one. With TZ, they are the server's whole
	// environment (see env.go).
	Env []string
	// Log is Kong's error log, where the server's output and its plugin's
	// kong.log.* calls go; nil: a log of its own at DefaultLevel.
	Log *ErrorLog
	// Args are further arguments of the start command, as kong.conf's
	// pluginserver_<name>_start_cmd carries them (e.g. -metrics-addr).
	Args []string
}

// Server is one running plugin server process.
type Server struct {
	Info   Info
	bin    string
	prefix string
	args   []string // of the start command, after -kong-prefix
	socket string
	env    []string
	log    *ErrorLog
	seq    atomic.Int64

	mu     sync.Mutex
	cmd    *exec.Cmd
	pid    int
	output chan struct{} // closed when the current process's output is drained

	idle chan net.Conn // kept-alive connections, as Kong's c:setkeepalive() pools them
}

// Start queries bin under prefix, starts it as Kong does and waits for its
// socket. The environment is resolved once, from this process, as nginx
// resolves its workers' environment once at startup.
func Start(bin, prefix string, o Options) (*Server, error) {
	info, socket, err := Dump(bin, prefix)
	if err != nil {
		return nil, err
	}
	env, err := WorkerEnv(o.Env, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = NewErrorLog(DefaultLevel)
	}
	s := &Server{Info: info, bin: bin, prefix: prefix, args: o.Args, socket: socket, env: env, log: o.Log, idle: make(chan net.Conn, 64)}
	if want := filepath.Join(prefix, info.Name+".socket"); socket != want {
		return nil, fmt.Errorf("%s: socket %s, Kong expects %s", bin, socket, want)
	}
	if err := s.start(); err != nil {
		s.Kill() // a process that never listened is not left behind
		return nil, err
	}
	return s, nil
}

// Log is the error log the server writes to.
func (s *Server) Log() *ErrorLog { return s.log }

// Env is the environment the server's process starts with.
func (s *Server) Env() []string { return append([]string(nil), s.env...) }

// Pid is the current process's id (0 when not running).
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid
}

// start spawns the process as process.lua's pluginserver_timer does:
// `exec <start_cmd>` through /bin/sh -c (ngx.pipe's way with a string
// command), the worker's environment only, stderr merged into stdout, and
// every line of that stream copied to the error log at INFO.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	startCmd := shellQuote(s.bin) + " -kong-prefix " + shellQuote(s.prefix)
	for _, a := range s.args {
		startCmd += " " + shellQuote(a)
	}
	s.log.Kong(LogNotice, "[kong] process.lua [pluginserver] starting pluginserver process for %s", s.Info.Name)
	cmd := exec.Command("/bin/sh", "-c", "exec "+startCmd)
	cmd.Env = append([]string{}, s.env...) // non-nil: nothing inherited from the test process
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = w, w // merge_stderr = true: one stream, in write order
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return err
	}
	w.Close() // the child holds the write end now
	s.cmd, s.pid = cmd, cmd.Process.Pid
	s.log.Kong(LogNotice, "[kong] process.lua [pluginserver] started, pid %d", s.pid)
	done := make(chan struct{})
	s.output = done
	go s.grabLogs(r, s.pid, done)
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

// grabLogs is process.lua's grab_logs: read the merged output line by line
// and log each non-empty line (a last partial line too) at INFO, prefixed
// "[name:pid] ".
func (s *Server) grabLogs(r *os.File, pid int, done chan struct{}) {
	defer close(done)
	defer r.Close()
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		line = strings.TrimSuffix(line, "\n")
		if line != "" {
			s.log.serverLine(s.Info.Name, pid, line)
		}
		if err != nil {
			return
		}
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Kill ends the process abruptly, as a crash would, and waits until its
// output has reached the log.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.idle) > 0 {
		(<-s.idle).Close()
	}
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		err := s.cmd.Wait()
		<-s.output
		reason, status := "exit", 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				reason, status = "signal", int(ws.Signal())
			} else {
				status = ee.ExitCode()
			}
		}
		s.log.Kong(LogNotice, "[kong] process.lua external pluginserver '%s' terminated: %s %d", s.Info.Name, reason, status)
		s.cmd, s.pid = nil, 0
	}
}

// Restart starts the process again after Kill (Kong's process.lua respawns
// a plugin server that exits, at most once a second; the specs choose when).
func (s *Server) Restart() error {
	s.Kill()
	return s.start()
}

// Output is what the plugin server wrote to stdout/stderr, across restarts,
// without the "[name:pid] " prefix Kong's error log adds (see ErrorLog for
// what an operator sees): the audit lines.
func (s *Server) Output() string { return s.log.Output(s.Info.Name) }

// StartInstance sends cmd_start_instance with the config JSON and returns
// the instance id (pb_rpc.lua call_start_instance).
func (s *Server) StartInstance(config []byte) (int32, error) {
	c, err := s.dial()
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
	var meta struct {
		Seq int `json:"__seq__"`
	}
	_ = json.Unmarshal(config, &meta)
	s.log.Kong(LogDebug, "[kong] pb_rpc.lua [%s] started plugin server: seq %d, worker 0, instance id %d", s.Info.Name, meta.Seq, st.InstanceId)
	return st.InstanceId, nil
}

// CloseInstance sends cmd_close_instance (pb_rpc.lua call_close_instance;
// plugin.lua closes the old instance after starting one for a new config).
func (s *Server) CloseInstance(id int32) error {
	c, err := s.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	seq := s.seq.Add(1)
	if err := writeMsg(c, &pb.RpcCall{Sequence: seq, Call: &pb.RpcCall_CmdCloseInstance{
		CmdCloseInstance: &pb.CmdCloseInstance{InstanceId: id}}}); err != nil {
		return err
	}
	var ret pb.RpcReturn
	if err := readMsg(c, &ret); err != nil {
		return fmt.Errorf("close instance: %w", err)
	}
	return nil
}

// dial opens a connection as pb_rpc.lua's Rpc:call does, logging a
// failure as it does (kong.log.err("trying to connect: ", err)).
func (s *Server) dial() (net.Conn, error) {
	c, err := net.Dial("unix", s.socket)
	if err != nil {
		s.log.Kong(LogErr, "[kong] pb_rpc.lua [%s] trying to connect: %v", s.Info.Name, err)
	}
	return c, err
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
		reply, err := req.callLogged(s.log, s.Info.Name, string(method), args)
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
		return s.dial()
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
