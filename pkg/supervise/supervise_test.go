package supervise

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a plugin server: with SUPERVISE_HELPER set it
// listens on the socket named by its last argument, prints its environment
// and serves until killed (or, per the mode, exits or ignores SIGTERM).
func TestMain(m *testing.M) {
	if mode := os.Getenv("SUPERVISE_HELPER"); mode != "" {
		helper(mode, os.Args[len(os.Args)-1])
		return
	}
	os.Exit(m.Run())
}

func helper(mode, socket string) {
	// /bin/sh exports PWD to what it execs, under Kong too.
	env := slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "PWD=") })
	slices.Sort(env)
	fmt.Println("env:", strings.Join(env, " "))
	switch mode {
	case "exit":
		os.Exit(3)
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
	}
	_ = os.Remove(socket)
	l, err := net.Listen("unix", socket)
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	fmt.Println("listening on", socket)
	for {
		c, err := l.Accept()
		if err != nil {
			os.Exit(1)
		}
		c.Close()
	}
}

// syncBuffer is an io.Writer the supervisor's goroutines share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func helperServer(t *testing.T, dir, name string) Server {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, name+".socket")
	return Server{Name: name, Socket: socket, StartCmd: exe + " -test.run=^$ " + socket}
}

func started(t *testing.T, servers []Server, o Options) *Supervisor {
	t.Helper()
	s := New(servers, o)
	s.Start()
	t.Cleanup(func() { s.Stop(5 * time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestFromEnvReadsKongsSettings(t *testing.T) {
	env := map[string]string{
		"KONG_PLUGINSERVER_NAMES":                     "jwt-claims, Subgate",
		"KONG_PLUGINSERVER_JWT_CLAIMS_SOCKET":         "/run/s/jwt-claims.socket",
		"SUBGATE_PLUGINSERVER_JWT_CLAIMS_START_CMD":   "/bin/jwt-claims -kong-prefix /run/s",
		"KONG_PLUGINSERVER_SUBGATE_SOCKET":            "/run/s/subgate.socket",
		"SUBGATE_PLUGINSERVER_SUBGATE_START_CMD":      "/bin/subgate -kong-prefix /run/s",
		"KONG_PLUGINSERVER_JWT_CLAIMS_QUERY_CMD":      "/bin/jwt-claims -dump",
		"SUBGATE_PLUGINSERVER_UNLISTED_START_CMD":     "/bin/unlisted",
		"KONG_PLUGINSERVER_USER_CONTEXT_START_CMD_XX": "ignored",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	got, err := FromEnv(lookup)
	if err != nil {
		t.Fatal(err)
	}
	want := []Server{
		{Name: "jwt-claims", Socket: "/run/s/jwt-claims.socket", StartCmd: "/bin/jwt-claims -kong-prefix /run/s"},
		{Name: "subgate", Socket: "/run/s/subgate.socket", StartCmd: "/bin/subgate -kong-prefix /run/s"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("FromEnv = %+v, want %+v", got, want)
	}

	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"no names":        {map[string]string{}, "KONG_PLUGINSERVER_NAMES is unset"},
		"no socket":       {map[string]string{"KONG_PLUGINSERVER_NAMES": "a", "SUBGATE_PLUGINSERVER_A_START_CMD": "x"}, "KONG_PLUGINSERVER_A_SOCKET is unset"},
		"no start cmd":    {map[string]string{"KONG_PLUGINSERVER_NAMES": "a", "KONG_PLUGINSERVER_A_SOCKET": "/s"}, "SUBGATE_PLUGINSERVER_A_START_CMD is unset"},
		"Kong starts too": {map[string]string{"KONG_PLUGINSERVER_NAMES": "a", "KONG_PLUGINSERVER_A_SOCKET": "/s", "SUBGATE_PLUGINSERVER_A_START_CMD": "x", "KONG_PLUGINSERVER_A_START_CMD": "x"}, "Kong would start a itself"},
	} {
		lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
		if _, err := FromEnv(lookup); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", name, err, tc.want)
		}
	}
}

// The servers start with exactly the given environment, their output
// prefixed as Kong's error log prefixes it; a killed one is respawned and
// its socket answers again.
func TestServersRunRespawnAndStop(t *testing.T) {
	dir := t.TempDir()
	out := &syncBuffer{}
	a, b := helperServer(t, dir, "a"), helperServer(t, dir, "b")
	s := started(t, []Server{a, b}, Options{Env: []string{"SUPERVISE_HELPER=serve", "TZ=UTC"}, Output: out, MinRespawn: 50 * time.Millisecond})
	st := s.Status()
	if len(st) != 2 || st[0].Name != "a" || !st[0].Running || st[0].Starts != 1 {
		t.Fatalf("status %+v", st)
	}
	waitFor(t, "a's output", func() bool {
		return strings.Contains(out.String(), fmt.Sprintf("[a:%d] env: SUPERVISE_HELPER=serve TZ=UTC\n", st[0].Pid))
	})

	old := st[0].Pid
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a respawned", func() bool { st := s.Status(); return st[0].Starts == 2 && st[0].Err == nil })
	if st := s.Status(); st[0].Pid == old || st[1].Starts != 1 {
		t.Fatalf("after the kill: %+v", st)
	}
	if !strings.Contains(out.String(), "a: exited (signal: killed); respawning") {
		t.Fatalf("no respawn line:\n%s", out)
	}

	s.Stop(5 * time.Second)
	for _, st := range s.Status() {
		if st.Running || syscall.Kill(st.Pid, 0) == nil {
			t.Fatalf("%s still runs after Stop: %+v", st.Name, st)
		}
	}
}

func TestRespawnsAtMostOncePerInterval(t *testing.T) {
	out := &syncBuffer{}
	s := New([]Server{helperServer(t, t.TempDir(), "quitter")}, Options{Env: []string{"SUPERVISE_HELPER=exit"}, Output: out, MinRespawn: 200 * time.Millisecond})
	s.Start()
	time.Sleep(time.Second)
	s.Stop(time.Second)
	n := s.Status()[0].Starts
	// 1 s / 200 ms: 5 or 6 starts; never the hundreds an unbounded loop makes.
	if n < 3 || n > 7 {
		t.Fatalf("%d starts in 1 s with a 200 ms respawn interval", n)
	}
}

func TestCommandNotFoundIsNotRespawned(t *testing.T) {
	out := &syncBuffer{}
	s := New([]Server{{Name: "ghost", Socket: filepath.Join(t.TempDir(), "ghost.socket"), StartCmd: "/nonexistent/ghost"}}, Options{Output: out, MinRespawn: 10 * time.Millisecond})
	s.Start()
	defer s.Stop(time.Second)
	waitFor(t, "giving up", func() bool { return s.Status()[0].GaveUp })
	time.Sleep(100 * time.Millisecond)
	if st := s.Status()[0]; st.Starts != 1 || st.Err == nil {
		t.Fatalf("%+v", st)
	}
	if !strings.Contains(out.String(), `exited with "command not found"; not respawned`) {
		t.Fatalf("output:\n%s", out)
	}
}

func TestStopKillsAServerThatIgnoresSIGTERM(t *testing.T) {
	s := started(t, []Server{helperServer(t, t.TempDir(), "stubborn")}, Options{Env: []string{"SUPERVISE_HELPER=stubborn"}, Output: &syncBuffer{}})
	pid := s.Status()[0].Pid
	begin := time.Now()
	s.Stop(300 * time.Millisecond)
	if took := time.Since(begin); took < 300*time.Millisecond {
		t.Fatalf("Stop returned after %v, before the grace period: SIGTERM was not ignored?", took)
	}
	if syscall.Kill(pid, 0) == nil {
		t.Fatal("the server survived Stop")
	}
}

func TestHealthAnswers(t *testing.T) {
	dir := t.TempDir()
	srv := helperServer(t, dir, "h")
	s := New([]Server{srv}, Options{Env: []string{"SUPERVISE_HELPER=serve"}, Output: &syncBuffer{}})
	h := httptest.NewServer(s.Handler())
	defer h.Close()
	get := func(path string) int {
		r, err := http.Get(h.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	if live, ready := get("/live"), get("/ready"); live != 200 || ready != 503 {
		t.Fatalf("before start: live %d ready %d, want 200 503", live, ready)
	}
	s.Start()
	defer s.Stop(time.Second)
	waitFor(t, "ready", func() bool { return get("/ready") == 200 })
	if err := syscall.Kill(s.Status()[0].Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// A stopped process still accepts on its socket (the kernel queues the
	// connection): ready means the socket accepts, what Kong needs to dial.
	_ = syscall.Kill(s.Status()[0].Pid, syscall.SIGCONT)
	_ = syscall.Kill(s.Status()[0].Pid, syscall.SIGKILL)
	os.Remove(srv.Socket)
	waitFor(t, "ready again", func() bool { return get("/ready") == 200 && s.Status()[0].Starts == 2 })
}

// Main: the servers are ready before the command runs (its first look at a
// socket succeeds), the command's status is the supervisor's, and the
// servers are gone afterwards. The environment reaches them as nginx's
// would: TZ and the names KONG_NGINX_MAIN_ENV declares.
func TestMainRunsTheCommandOnceReady(t *testing.T) {
	dir := t.TempDir()
	srv := helperServer(t, dir, "m")
	t.Setenv("KONG_PLUGINSERVER_NAMES", "m")
	t.Setenv("KONG_PLUGINSERVER_M_SOCKET", srv.Socket)
	t.Setenv("SUBGATE_PLUGINSERVER_M_START_CMD", srv.StartCmd)
	t.Setenv("KONG_NGINX_MAIN_ENV", "SUPERVISE_HELPER")
	t.Setenv("SUPERVISE_HELPER", "serve")
	t.Setenv("SUBGATE_UNDECLARED", "must-not-pass")
	out := &syncBuffer{}
	// The command checks the socket is there, then exits 7.
	status := Main([]string{"--", "/bin/sh", "-c", "test -S " + srv.Socket + " && exit 7"}, out)
	if status != 7 {
		t.Fatalf("status %d, want the command's 7; output:\n%s", status, out)
	}
	o := out.String()
	if !strings.Contains(o, "env: SUPERVISE_HELPER=serve\n") || strings.Contains(o, "SUBGATE_UNDECLARED") {
		t.Fatalf("the server's environment is not nginx's:\n%s", o)
	}
	if !strings.Contains(o, "sh exited (status 7): stopping the plugin servers") {
		t.Fatalf("output:\n%s", o)
	}
	pid := 0
	fmt.Sscanf(o[strings.Index(o, "m: started, pid ")+len("m: started, pid "):], "%d", &pid)
	if pid == 0 || syscall.Kill(pid, 0) == nil {
		t.Fatalf("server pid %d still runs after Main returned", pid)
	}
}

func TestMainRefusesBadSettings(t *testing.T) {
	t.Setenv("KONG_PLUGINSERVER_NAMES", "x")
	t.Setenv("KONG_PLUGINSERVER_X_SOCKET", "/tmp/x.socket")
	t.Setenv("SUBGATE_PLUGINSERVER_X_START_CMD", "/bin/true")
	t.Setenv("KONG_PLUGINSERVER_X_START_CMD", "/bin/true")
	out := &syncBuffer{}
	if status := Main(nil, out); status != 2 || !strings.Contains(out.String(), "Kong would start x itself") {
		t.Fatalf("status %d, output %s", status, out)
	}
}

func TestMainGivesUpWhenASocketNeverAppears(t *testing.T) {
	t.Setenv("KONG_PLUGINSERVER_NAMES", "late")
	t.Setenv("KONG_PLUGINSERVER_LATE_SOCKET", filepath.Join(t.TempDir(), "elsewhere.socket"))
	t.Setenv("SUBGATE_PLUGINSERVER_LATE_START_CMD", "sleep 30")
	out := &syncBuffer{}
	if status := Main([]string{"-ready-timeout", "300ms", "--", "/bin/true"}, out); status != 1 || !strings.Contains(out.String(), "plugin servers not ready") {
		t.Fatalf("status %d, output %s", status, out)
	}
}

func TestReadEnvFileAsDocker(t *testing.T) {
	in := "# comment\n\nA=1\n  B=x=y # not a comment\nC=\nFROM_ENV\nMISSING\nD= spaced \n"
	lookup := func(k string) (string, bool) {
		if k == "FROM_ENV" {
			return "env", true
		}
		return "", false
	}
	got, err := ReadEnvFile(strings.NewReader(in), lookup)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A=1", "B=x=y # not a comment", "C=", "FROM_ENV=env", "D= spaced "}
	if !slices.Equal(got, want) {
		t.Fatalf("ReadEnvFile = %q, want %q", got, want)
	}
	if _, err := ReadEnvFile(strings.NewReader("NOT VALID=1\n"), lookup); err == nil {
		t.Fatal("a bad name was accepted")
	}
}

// The shipped kong/plugins.env is what FromEnv reads: every server has its
// socket and start command, the socket is where the start command's
// -kong-prefix puts it, and no server is left for Kong to start.
func TestShippedPluginsEnv(t *testing.T) {
	f, err := os.Open("../../kong/plugins.env")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries, err := ReadEnvFile(f, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, e := range entries {
		k, v, _ := strings.Cut(e, "=")
		env[k] = v
	}
	servers, err := FromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 5 {
		t.Fatalf("%d servers", len(servers))
	}
	for _, s := range servers {
		f := strings.Fields(s.StartCmd)
		prefix := ""
		for i := range f[:len(f)-1] {
			if f[i] == "-kong-prefix" {
				prefix = f[i+1]
			}
		}
		if want := filepath.Join(prefix, filepath.Base(f[0])+".socket"); s.Socket != want || filepath.Base(f[0]) != s.Name {
			t.Errorf("%s: socket %s, start command %q makes %s", s.Name, s.Socket, s.StartCmd, want)
		}
		if q := env[Setting("KONG", s.Name, "QUERY_CMD")]; q != f[0]+" -dump" {
			t.Errorf("%s: query command %q, want %q", s.Name, q, f[0]+" -dump")
		}
		if strings.HasPrefix(f[0], "/usr/local/bin/") {
			t.Errorf("%s: binary in /usr/local/bin, where Kong finds and starts it itself", s.Name)
		}
	}
}
