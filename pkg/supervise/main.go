package supervise

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Usage is the command's synopsis.
const Usage = `usage: subgate-pluginservers [flags] [-- command [args...]]

Starts the plugin servers that KONG_PLUGINSERVER_NAMES names, each with its
SUBGATE_PLUGINSERVER_<NAME>_START_CMD, waits until every
KONG_PLUGINSERVER_<NAME>_SOCKET accepts connections, and keeps them running.
With a command (Kong: "kong docker-start", "kong start" with nginx_daemon off),
it runs that command once the servers are ready, passes it the signals it
receives, stops the servers when it exits and exits with its status.
Without one it runs until SIGTERM or SIGINT (a sidecar).
`

// Main is the subgate-pluginservers command (args without the program
// name); it returns the exit status.
func Main(args []string, stdout io.Writer) int {
	fs := flag.NewFlagSet("subgate-pluginservers", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() { fmt.Fprint(stdout, Usage, "\nflags:\n"); fs.PrintDefaults() }
	health := fs.String("health-addr", "", "serve GET /live and GET /ready on this address (host:port); empty: none")
	runAs := fs.String("user", "", "run the plugin servers as this user (needs root; the socket directories must be writable by it)")
	readyTimeout := fs.Duration("ready-timeout", 30*time.Second, "how long the servers may take to open their sockets")
	grace := fs.Duration("stop-timeout", 10*time.Second, "how long a server may take to exit after SIGTERM before SIGKILL")
	envFile := fs.String("env-file", "", "read settings from this env file (kong/plugins.env) too; the environment wins; the command inherits them")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	command := fs.Args()
	if *envFile != "" {
		if err := LoadEnvFile(*envFile); err != nil {
			fmt.Fprintln(stdout, "subgate-pluginservers:", err)
			return 2
		}
	}

	servers, err := FromEnv(os.LookupEnv)
	if err != nil {
		fmt.Fprintln(stdout, "subgate-pluginservers:", err)
		return 2
	}
	declared, err := MainEnvFromProcess()
	if err != nil {
		fmt.Fprintln(stdout, "subgate-pluginservers:", err)
		return 2
	}
	env, err := WorkerEnv(declared, os.LookupEnv)
	if err != nil {
		fmt.Fprintln(stdout, "subgate-pluginservers:", err)
		return 2
	}
	o := Options{Env: env, Output: stdout}
	if *runAs != "" {
		if o.Credential, err = Credential(*runAs); err != nil {
			fmt.Fprintln(stdout, "subgate-pluginservers:", err)
			return 2
		}
	}
	for _, s := range servers {
		if err := socketDir(s.Socket, o.Credential); err != nil {
			fmt.Fprintln(stdout, "subgate-pluginservers:", err)
			return 2
		}
	}

	sup := New(servers, o)
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP)
	defer signal.Stop(signals)
	sup.Start()
	defer sup.Stop(*grace)

	if *health != "" {
		l, err := net.Listen("tcp", *health)
		if err != nil {
			sup.Logf("health listener: %v", err)
			return 1
		}
		srv := &http.Server{Handler: sup.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(l) }()
		defer srv.Close()
	}

	ctx, cancel := context.WithTimeout(context.Background(), *readyTimeout)
	err = waitReadyOrSignal(ctx, sup, signals)
	cancel()
	if err != nil {
		sup.Logf("%v", err)
		return 1
	}
	sup.Logf("ready: %d plugin servers accept connections", len(servers))

	if len(command) == 0 {
		sig := <-signals
		sup.Logf("%v: stopping the plugin servers", sig)
		return 0
	}
	return runCommand(sup, command, signals)
}

func waitReadyOrSignal(ctx context.Context, sup *Supervisor, signals <-chan os.Signal) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case sig := <-signals:
			cancel(fmt.Errorf("%v before the plugin servers were ready", sig))
		case <-ctx.Done():
		}
	}()
	err := sup.WaitReady(ctx)
	if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(cause, context.DeadlineExceeded) && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// runCommand runs the command in the foreground with this process's
// environment (Kong reads its KONG_* settings from it), forwarding signals.
func runCommand(sup *Supervisor, command []string, signals <-chan os.Signal) int {
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		sup.Logf("cannot run %q: %v", command[0], err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case sig := <-signals:
			_ = cmd.Process.Signal(sig)
		case err := <-done:
			var ee *exec.ExitError
			status := 0
			if errors.As(err, &ee) {
				status = ee.ExitCode()
				if status < 0 {
					status = 128 + int(ee.Sys().(syscall.WaitStatus).Signal())
				}
			} else if err != nil {
				status = 1
			}
			sup.Logf("%s exited (status %d): stopping the plugin servers", filepath.Base(command[0]), status)
			return status
		}
	}
}

// Credential is the user name's uid and gid, for Options.Credential: only
// root may run the servers as another user.
func Credential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 && uint64(os.Geteuid()) != uid {
		return nil, fmt.Errorf("-user %s: only root can run the servers as another user", name)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// socketDir makes a socket's directory when it is missing, owned by the
// servers' user when they run as another one.
func socketDir(socket string, cred *syscall.Credential) error {
	dir := filepath.Dir(socket)
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	if cred != nil {
		return os.Chown(dir, int(cred.Uid), int(cred.Gid))
	}
	return nil
}

// Handler answers GET /live (the supervisor serves) and GET /ready (every
// socket accepts connections; otherwise 503 with what is not ready), for
// Kubernetes probes and whatever starts Kong after the servers.
func (s *Supervisor) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "live")
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if err := s.Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}
