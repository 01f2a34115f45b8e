// Package supervise runs the plugin servers outside Kong and keeps them
// running, as Kong's own plugin-server code would (Kong 3.9's
// kong/runloop/plugin_servers/process.lua), with one difference: Kong
// is given only the sockets and the -dump commands.
//
// Why outside: Kong 3.9.x keeps the process handle of every plugin server
// it starts inside kong.configuration, and its Admin API's GET / (the first
// call of decK and of the ingress controller) then answers 500 "Cannot
// serialise cdata" on every request that the starting worker serves. A
// plugin server without pluginserver_<name>_start_cmd is, for Kong,
// "managed externally" (kong/conf_loader/init.lua), and the Admin API stays
// whole.
//
// What stays as under Kong: each server is run as `/bin/sh -c "exec
// <start command>"` with the environment an nginx worker would give it (TZ
// and the names declared with nginx_main_env, see env.go), respawned when
// it exits but at most once a second, and not respawned when the shell
// reports "command not found" (status 127). Its output lines are prefixed
// "[name:pid] " as Kong prefixes them in its error log.
package supervise

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Server is one plugin server as the settings describe it.
type Server struct {
	Name     string // the plugin's name, as in KONG_PLUGINSERVER_NAMES
	Socket   string // where Kong dials it: KONG_PLUGINSERVER_<NAME>_SOCKET
	StartCmd string // SUBGATE_PLUGINSERVER_<NAME>_START_CMD
}

// Setting is the name of a per-server setting as Kong spells it:
// Setting("KONG", "jwt-claims", "SOCKET") is
// KONG_PLUGINSERVER_JWT_CLAIMS_SOCKET (kong/conf_loader: dashes become
// underscores).
func Setting(prefix, name, what string) string {
	return prefix + "_PLUGINSERVER_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_" + what
}

// FromEnv reads the servers from the settings Kong reads (lookup is
// os.LookupEnv, or an env file's entries): KONG_PLUGINSERVER_NAMES, each
// server's socket, and each server's start command under the SUBGATE_
// prefix, which Kong never reads. A KONG_ start command is refused: Kong
// would start that server itself as well.
func FromEnv(lookup func(string) (string, bool)) ([]Server, error) {
	names, _ := lookup("KONG_PLUGINSERVER_NAMES")
	var out []Server
	var errs []error
	for _, n := range strings.Split(names, ",") {
		n = strings.ToLower(strings.TrimSpace(n))
		if n == "" {
			continue
		}
		s := Server{Name: n}
		s.Socket, _ = lookup(Setting("KONG", n, "SOCKET"))
		s.StartCmd, _ = lookup(Setting("SUBGATE", n, "START_CMD"))
		if s.Socket == "" {
			errs = append(errs, fmt.Errorf("%s is unset: set it to the socket the start command makes (<-kong-prefix>/%s.socket)", Setting("KONG", n, "SOCKET"), n))
		}
		if strings.TrimSpace(s.StartCmd) == "" {
			errs = append(errs, fmt.Errorf("%s is unset: the command that starts %s", Setting("SUBGATE", n, "START_CMD"), n))
		}
		if v, ok := lookup(Setting("KONG", n, "START_CMD")); ok && v != "" {
			errs = append(errs, fmt.Errorf("%s is set: Kong would start %s itself too (and its Admin API's GET / answers 500 in Kong 3.9); remove it", Setting("KONG", n, "START_CMD"), n))
		}
		out = append(out, s)
	}
	if len(out) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("KONG_PLUGINSERVER_NAMES is unset or empty: no plugin server to run"))
	}
	return out, errors.Join(errs...)
}

// Options say how the servers run.
type Options struct {
	// Env is each server's whole environment (see WorkerEnv).
	Env []string
	// Credential, when set, runs the servers as another user (the
	// supervisor runs as root and Kong's workers as that user, so the
	// sockets are theirs).
	Credential *syscall.Credential
	// Output receives the servers' output lines, "[name:pid] " first, and
	// the supervisor's own; nil: os.Stdout.
	Output io.Writer
	// MinRespawn is the least time between two starts of one server
	// (0: a second, as Kong).
	MinRespawn time.Duration
}

// Supervisor runs a set of plugin servers.
type Supervisor struct {
	opts    Options
	out     *lineWriter
	procs   []*proc
	stopped chan struct{}
	stop    sync.Once
	wg      sync.WaitGroup
}

type proc struct {
	Server
	mu       sync.Mutex
	cmd      *exec.Cmd
	pid      int
	starts   int
	gaveUp   bool
	lastExit string
}

// New prepares the servers; Start runs them.
func New(servers []Server, o Options) *Supervisor {
	if o.Output == nil {
		o.Output = os.Stdout
	}
	if o.MinRespawn == 0 {
		o.MinRespawn = time.Second
	}
	s := &Supervisor{opts: o, out: &lineWriter{w: o.Output}, stopped: make(chan struct{})}
	for _, srv := range servers {
		s.procs = append(s.procs, &proc{Server: srv})
	}
	return s
}

// Logf writes one line of the supervisor's own.
func (s *Supervisor) Logf(format string, a ...any) {
	s.out.line("[subgate-pluginservers] " + fmt.Sprintf(format, a...))
}

// Start starts every server, each kept running by a goroutine of its own
// until Stop.
func (s *Supervisor) Start() {
	for _, p := range s.procs {
		s.wg.Add(1)
		go s.run(p)
	}
}

func (s *Supervisor) run(p *proc) {
	defer s.wg.Done()
	next := time.Time{}
	for {
		if wait := time.Until(next); wait > 0 {
			select {
			case <-s.stopped:
				return
			case <-time.After(wait):
			}
		}
		select {
		case <-s.stopped:
			return
		default:
		}
		next = time.Now().Add(s.opts.MinRespawn)
		status, err := s.once(p)
		if err != nil {
			s.Logf("%s: cannot start %q: %v", p.Name, p.StartCmd, err)
			continue
		}
		select {
		case <-s.stopped:
			return
		default:
		}
		if status == 127 {
			// As Kong: a command that is not there will not appear by
			// starting it again.
			s.Logf("%s: start command %q exited with \"command not found\"; not respawned", p.Name, p.StartCmd)
			p.mu.Lock()
			p.gaveUp = true
			p.mu.Unlock()
			return
		}
		s.Logf("%s: exited (%s); respawning", p.Name, p.lastExitString())
	}
}

// once runs one process of p to its end and returns its exit status (-1
// when killed by a signal).
func (s *Supervisor) once(p *proc) (int, error) {
	cmd := exec.Command("/bin/sh", "-c", "exec "+p.StartCmd)
	cmd.Env = s.opts.Env
	if cmd.Env == nil {
		cmd.Env = []string{} // nil would mean this process's environment
	}
	// Its own process group: a terminal's Ctrl-C reaches the supervisor,
	// which stops the servers itself, in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: s.opts.Credential}
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	cmd.Stdout, cmd.Stderr = w, w
	p.mu.Lock()
	err = cmd.Start()
	if err == nil {
		p.cmd, p.pid = cmd, cmd.Process.Pid
		p.starts++
	}
	p.mu.Unlock()
	w.Close()
	if err != nil {
		r.Close()
		return 0, err
	}
	s.Logf("%s: started, pid %d", p.Name, cmd.Process.Pid)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer r.Close()
		prefix := fmt.Sprintf("[%s:%d] ", p.Name, cmd.Process.Pid)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			if line := sc.Text(); line != "" {
				s.out.line(prefix + line)
			}
		}
	}()
	err = cmd.Wait()
	<-done
	status := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		status = ee.ExitCode()
	}
	p.mu.Lock()
	p.cmd = nil
	p.lastExit = cmd.ProcessState.String()
	p.mu.Unlock()
	return status, nil
}

func (p *proc) lastExitString() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastExit
}

// Stop stops every server: SIGTERM, then SIGKILL for any still running
// after grace. It returns when all have exited.
func (s *Supervisor) Stop(grace time.Duration) {
	s.stop.Do(func() { close(s.stopped) })
	s.signalAll(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		s.signalAll(syscall.SIGKILL)
		<-done
	}
}

func (s *Supervisor) signalAll(sig syscall.Signal) {
	for _, p := range s.procs {
		p.mu.Lock()
		if p.cmd != nil {
			_ = p.cmd.Process.Signal(sig)
		}
		p.mu.Unlock()
	}
}

// Status is one server's state, for health answers and tests.
type Status struct {
	Name    string
	Pid     int  // of the current (or last) process
	Running bool // a process runs now
	Starts  int  // processes started so far (1 + respawns)
	GaveUp  bool // not respawned (command not found)
	Err     error
}

// Status reports every server, in the settings' order, with whether its
// socket accepts a connection now (Err nil).
func (s *Supervisor) Status() []Status {
	out := make([]Status, 0, len(s.procs))
	for _, p := range s.procs {
		p.mu.Lock()
		st := Status{Name: p.Name, Pid: p.pid, Running: p.cmd != nil, Starts: p.starts, GaveUp: p.gaveUp}
		p.mu.Unlock()
		st.Err = dial(p.Socket)
		if st.Err == nil && !st.Running {
			st.Err = fmt.Errorf("%s: no process (its socket answers: another process owns it?)", p.Name)
		}
		out = append(out, st)
	}
	return out
}

// Ready is nil when every server's socket accepts a connection.
func (s *Supervisor) Ready() error {
	var errs []error
	for _, st := range s.Status() {
		if st.Err != nil {
			errs = append(errs, st.Err)
		}
	}
	return errors.Join(errs...)
}

// WaitReady waits until Ready, or ctx ends (its error then says which
// servers are not ready).
func (s *Supervisor) WaitReady(ctx context.Context) error {
	for {
		err := s.Ready()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("plugin servers not ready: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func dial(socket string) error {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// lineWriter writes whole lines from many goroutines without interleaving.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) line(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.w, s+"\n")
}
