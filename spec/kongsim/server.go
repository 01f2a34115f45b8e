// Package kongsim plays Kong's side of go-pdk's "ProtoBuf:1" plugin-server
// protocol, as Kong's own kong/runloop/plugin_servers (pb_rpc.lua,
// plugin.lua, process.lua) does, so the compiled plugin binaries can be
// driven without Kong: query a binary with -dump, start instances with the
// config Kong would send, and run events while answering each PDK call from
// a request model. It is a stand-in, held to a real Kong 3.9.3 by the specs
// (spec/kong_test.go): where the two disagree, Kong is right.
package kongsim

import (
	"context"
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
	"sync/atomic"
	"syscall"
	"time"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/proto"

	"github.com/subgate/subgate/pkg/supervise"
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

// Dump runs a plugin server's query command (kong.conf's
// pluginserver_<name>_query_cmd, e.g. "/path/jwt-claims -dump"; Kong runs
// it with io.popen, through /bin/sh) and checks what Kong's process.lua
// checks: the protocol and one plugin. Kong ignores the SocketPath it
// prints (the socket is pluginserver_<name>_socket).
func Dump(queryCmd string) (Info, error) {
	out, err := exec.Command("/bin/sh", "-c", queryCmd).Output()
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", queryCmd, err)
	}
	var d dump
	if err := json.Unmarshal(out, &d); err != nil {
		return Info{}, fmt.Errorf("%s printed no JSON: %w", queryCmd, err)
	}
	if d.Protocol != "ProtoBuf:1" {
		return Info{}, fmt.Errorf("%s speaks %q, Kong expects ProtoBuf:1", queryCmd, d.Protocol)
	}
	if len(d.Plugins) != 1 {
		return Info{}, fmt.Errorf("%s: want one plugin, got %+v", queryCmd, d.Plugins)
	}
	return d.Plugins[0], nil
}

// Server is Kong's side of one plugin server: its -dump info and its
// socket. The process is not Kong's to run: subgate ships its plugin
// servers started outside Kong (pkg/supervise), and so do the specs.
type Server struct {
	Info   Info
	socket string
	log    *ErrorLog
	seq    atomic.Int64

	idle chan net.Conn // kept-alive connections, as Kong's c:setkeepalive() pools them
}

// Connect is Kong's view of the plugin server at socket described by info:
// nothing is dialled until the first call. log is Kong's error log, where
// the plugin's kong.log.* calls and Kong's own plugin-server messages go
// (nil: a log of its own at DefaultLevel).
func Connect(info Info, socket string, log *ErrorLog) *Server {
	if log == nil {
		log = NewErrorLog(DefaultLevel)
	}
	return &Server{Info: info, socket: socket, log: log, idle: make(chan net.Conn, 64)}
}

// Log is the error log the server writes to.
func (s *Server) Log() *ErrorLog { return s.log }

// Drop closes the pooled connections (after the process behind the socket
// was killed, they are dead; Kong finds that out on its next call).
func (s *Server) Drop() {
	for {
		select {
		case c := <-s.idle:
			c.Close()
		default:
			return
		}
	}
}

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
	s.log.Kong(LogDebug, "[kong] pb_rpc.lua:341 started plugin server: seq %d, worker 0, instance id %d", meta.Seq, st.InstanceId)
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
		s.log.Kong(LogErr, "[kong] pb_rpc.lua:273 trying to connect: %s", cosocketError(err))
	}
	return c, err
}

// cosocketError is how ngx.socket.connect words a failed connect.
func cosocketError(err error) string {
	switch {
	case errors.Is(err, syscall.ENOENT):
		return "no such file or directory"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	}
	return err.Error()
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

// PrefixDir makes a fresh directory for sockets. Unix socket paths are
// limited to ~107 bytes, so it sits under /tmp.
func PrefixDir() (string, error) { return os.MkdirTemp("/tmp", "kongsim-") }

// Supervised starts the plugin server bin under a supervisor, as subgate's
// deployment starts its servers (pkg/supervise: outside Kong, the
// environment nginx would give it), with its socket in dir and further
// start-command arguments args, and returns Kong's side of it once the
// socket accepts connections. The caller stops the supervisor.
func Supervised(bin, dir string, args []string, o supervise.Options, log *ErrorLog) (*Server, *supervise.Supervisor, error) {
	info, err := Dump(shellQuote(bin) + " -dump")
	if err != nil {
		return nil, nil, err
	}
	socket := filepath.Join(dir, info.Name+".socket")
	cmd := shellQuote(bin) + " -kong-prefix " + shellQuote(dir)
	for _, a := range args {
		cmd += " " + shellQuote(a)
	}
	sup := supervise.New([]supervise.Server{{Name: info.Name, Socket: socket, StartCmd: cmd}}, o)
	sup.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sup.WaitReady(ctx); err != nil {
		sup.Stop(time.Second)
		return nil, nil, err
	}
	return Connect(info, socket, log), sup, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
