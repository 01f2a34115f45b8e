// Package realkong runs a real Kong Gateway for the specs: DB-less, on a
// declarative kong.yml, with its settings given as KONG_* environment
// variables as the Docker image and the Kubernetes manifests give them, and
// the plugin servers started outside it (pkg/supervise). The Kong is the
// one ../shared/kong builds from source (3.9.3), a local install named by
// KONG, or any `kong` on PATH.
package realkong

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// Version is the Kong release the project is tested against.
const Version = "3.9.3"

// Hint says how to get a Kong when Find finds none.
const Hint = "no Kong found: build Kong " + Version + " with the kit (../shared/kong/build.sh, ~3 minutes, cached), " +
	"set KONG=/path/to/bin/kong for a local install, or run the Docker demo (make demo-docker)"

// Find returns the Kong executable: $KONG (the executable, or a kit prefix
// holding bin/kong), else the kit's prefix (${SUBGATE_KONG_HOME:-~/.cache/kong-3.9.3}),
// else `kong` on PATH; "" when there is none.
func Find() string {
	if k := os.Getenv("KONG"); k != "" {
		if st, err := os.Stat(k); err == nil && st.IsDir() {
			k = filepath.Join(k, "bin", "kong")
		}
		return k
	}
	home := os.Getenv("SUBGATE_KONG_HOME")
	if home == "" {
		if h, err := os.UserHomeDir(); err == nil {
			home = filepath.Join(h, ".cache", "kong-"+Version)
		}
	}
	if k := filepath.Join(home, "bin", "kong"); isExecutable(k) {
		return k
	}
	if k, err := exec.LookPath("kong"); err == nil {
		return k
	}
	return ""
}

// Require returns Find's Kong for a test, or skips it saying how to get
// one; with SUBGATE_REQUIRE_KONG=1 (CI: make test) a missing Kong fails it.
func Require(t testing.TB) string {
	t.Helper()
	if k := Find(); k != "" {
		return k
	}
	if os.Getenv("SUBGATE_REQUIRE_KONG") == "1" {
		t.Fatal(Hint + " (SUBGATE_REQUIRE_KONG=1)")
	}
	t.Skip(Hint)
	return ""
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Options say how Kong runs.
type Options struct {
	Exe string // the kong executable (Find)
	// Env is Kong's settings and the environment its env vault reads
	// (KONG_* entries; kong/plugins.env's entries among them).
	Env []string
	// DeclarativeConfig is the kong.yml to load.
	DeclarativeConfig []byte
	Workers           int    // nginx_worker_processes (0: 1)
	LogLevel          string // log_level ("": Kong's default, notice)
	// User is nginx_user ("": "root root" when running as root, as the
	// kit's README says; otherwise nginx ignores it).
	User string
	// Prefix is Kong's prefix directory ("": a new one under /tmp, removed
	// by Stop).
	Prefix   string
	Settings map[string]string // further kong.conf settings, by name
	// Proxy and Admin are the listen addresses ("": free loopback ports).
	Proxy, Admin string
}

// Kong is one running Kong.
type Kong struct {
	ProxyURL, AdminURL, StatusURL string
	Prefix                        string
	Exe                           string
	env                           []string
	ymlPath                       string
	ownPrefix                     bool
}

// Prepare writes the declarative config and computes Kong's environment
// without starting anything: Start runs it as a daemon; Env and Args let a
// caller run it in the foreground (nginx_daemon off) under another
// process, as the Docker image runs Kong under subgate-pluginservers.
func Prepare(o Options) (*Kong, error) {
	if o.Exe == "" {
		return nil, errors.New(Hint)
	}
	k := &Kong{Exe: o.Exe, Prefix: o.Prefix}
	if k.Prefix == "" {
		dir, err := os.MkdirTemp("/tmp", "kong-")
		if err != nil {
			return nil, err
		}
		k.Prefix, k.ownPrefix = dir, true
	}
	k.ymlPath = k.Prefix + ".kong.yml" // beside the prefix: Kong owns what is in it
	if err := os.WriteFile(k.ymlPath, o.DeclarativeConfig, 0o644); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	proxy, admin, status := "127.0.0.1:"+ports[0], "127.0.0.1:"+ports[1], "127.0.0.1:"+ports[2]
	if o.Proxy != "" {
		proxy = o.Proxy
	}
	if o.Admin != "" {
		admin = o.Admin
	}
	k.ProxyURL, k.AdminURL, k.StatusURL = "http://"+proxy, "http://"+admin, "http://"+status
	workers := o.Workers
	if workers == 0 {
		workers = 1
	}
	user := o.User
	if user == "" && os.Geteuid() == 0 {
		user = "root root"
	}
	settings := map[string]string{
		"prefix":                 k.Prefix,
		"database":               "off",
		"declarative_config":     k.ymlPath,
		"proxy_listen":           proxy,
		"admin_listen":           admin,
		"status_listen":          status,
		"admin_gui_listen":       "off",
		"nginx_worker_processes": strconv.Itoa(workers),
		"anonymous_reports":      "off",
	}
	if user != "" {
		settings["nginx_user"] = user
	}
	if o.LogLevel != "" {
		settings["log_level"] = o.LogLevel
	}
	for name, v := range o.Settings {
		settings[name] = v
	}
	// The base environment: this process's, without settings of its own
	// for Kong, so that only what the test gives configures Kong.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KONG_") {
			k.env = append(k.env, kv)
		}
	}
	k.env = append(k.env, o.Env...)
	for name, v := range settings {
		k.env = append(k.env, "KONG_"+strings.ToUpper(name)+"="+v)
	}
	return k, nil
}

// Start starts a Kong as `kong start` does (a daemon) and returns once its
// proxy answers.
func Start(o Options) (*Kong, error) {
	k, err := Prepare(o)
	if err != nil {
		return nil, err
	}
	if out, err := k.Run("start"); err != nil {
		k.cleanup()
		return nil, fmt.Errorf("kong start: %v\n%s\n%s", err, out, tail(k.ErrorLog(), 3000))
	}
	if err := k.WaitReady(30 * time.Second); err != nil {
		_ = k.Stop()
		return nil, err
	}
	return k, nil
}

// Env is the environment Kong runs with (its settings included).
func (k *Kong) Env() []string { return append([]string(nil), k.env...) }

// Command is `kong <args>` with Kong's environment, for the caller to run.
func (k *Kong) Command(args ...string) *exec.Cmd {
	cmd := exec.Command(k.Exe, args...)
	cmd.Env = k.env
	return cmd
}

// Run runs `kong <args>` to its end and returns its output.
func (k *Kong) Run(args ...string) (string, error) {
	out, err := k.Command(args...).CombinedOutput()
	return string(out), err
}

// WaitReady waits until the proxy answers and the workers are up: `kong
// start` exits 0 even when the workers die at once (the kit's README), so a
// worker's death in the error log is a failure.
func (k *Kong) WaitReady(within time.Duration) error {
	deadline := time.Now().Add(within)
	client := &http.Client{Timeout: time.Second}
	for {
		if died := workerDeath.FindString(k.ErrorLog()); died != "" {
			return fmt.Errorf("a Kong worker died: %s\n%s", died, tail(k.ErrorLog(), 3000))
		}
		if r, err := client.Get(k.StatusURL + "/status"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				if r, err := client.Get(k.ProxyURL + "/"); err == nil {
					r.Body.Close()
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kong did not answer within %v\n%s", within, tail(k.ErrorLog(), 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var workerDeath = regexp.MustCompile(`worker process \d+ exited on signal \d+|\[(alert|emerg)\][^\n]*`)

// Reload replaces the declarative config and runs `kong reload` (new
// workers with the new config; the old ones finish their requests), then
// waits until the new config serves (see applied).
func (k *Kong) Reload(yml []byte) error {
	yml, marker, err := withMarker(yml)
	if err != nil {
		return err
	}
	if err := os.WriteFile(k.ymlPath, yml, 0o644); err != nil {
		return err
	}
	if out, err := k.Run("reload", "-p", k.Prefix); err != nil {
		return fmt.Errorf("kong reload: %v\n%s", err, out)
	}
	return k.applied(marker)
}

var markers atomic.Int64

// withMarker adds to yml's first service a route of its own, which no
// other config has: Kong applies a new config asynchronously (POST /config
// answers once it is stored; each worker rebuilds its router and plugins
// iterator on an event; kong reload's old workers serve until they quit),
// and the marker's path being routed is how a caller knows the new config
// serves. "" when yml has no service to add it to.
func withMarker(yml []byte) ([]byte, string, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(yml, &doc); err != nil {
		return nil, "", fmt.Errorf("kong.yml: %w", err)
	}
	services, _ := doc["services"].([]any)
	if len(services) == 0 {
		return yml, "", nil
	}
	svc, _ := services[0].(map[string]any)
	if svc == nil {
		return yml, "", nil
	}
	n := markers.Add(1)
	path := fmt.Sprintf("/__realkong/config/%d/%d", os.Getpid(), n)
	routes, _ := svc["routes"].([]any)
	svc["routes"] = append(routes, map[string]any{"name": fmt.Sprintf("realkong-config-%d-%d", os.Getpid(), n), "paths": []any{path}})
	out, err := yaml.Marshal(doc)
	return out, path, err
}

// applied waits until the marker's path is routed on fresh connections
// (so by whichever worker takes them) several times running.
func (k *Kong) applied(marker string) error {
	if marker == "" {
		return nil
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(30 * time.Second)
	for routed := 0; routed < 8; {
		resp, err := client.Get(k.ProxyURL + marker)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNotFound {
				routed = 0
			} else {
				routed++
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the new config did not serve within 30 s (%s not routed)", marker)
		}
		if routed == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// PostConfig replaces the declarative config through the Admin API's
// POST /config, as decK or the ingress controller would (no new workers;
// every plugin config gets a new __seq__), and waits until it serves.
func (k *Kong) PostConfig(yml []byte) error {
	yml, marker, err := withMarker(yml)
	if err != nil {
		return err
	}
	resp, err := http.Post(k.AdminURL+"/config", "application/yaml", bytes.NewReader(yml))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("POST /config: %d %s", resp.StatusCode, body)
	}
	return k.applied(marker)
}

// MasterPid is the nginx master's pid (0 when none runs).
func (k *Kong) MasterPid() int {
	b, err := os.ReadFile(filepath.Join(k.Prefix, "pids", "nginx.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid == 0 || syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

// Processes lists the pids of every running process whose parent is the
// nginx master or whose command line names this prefix (the master, its
// workers, anything they started).
func (k *Kong) Processes() []int {
	master := k.MasterPid()
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if bytes.Contains(cmdline, []byte(k.Prefix)) || (master != 0 && parentOf(stat) == master) {
			if !strings.Contains(string(stat), ") Z ") { // a zombie is already gone
				out = append(out, pid)
			}
		}
	}
	return out
}

func parentOf(stat []byte) int {
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// WorkerPids are the nginx workers' pids.
func (k *Kong) WorkerPids() []int {
	master := k.MasterPid()
	var out []int
	for _, pid := range k.Processes() {
		stat, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		cmdline, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if parentOf(stat) == master && bytes.Contains(cmdline, []byte("worker process")) {
			out = append(out, pid)
		}
	}
	return out
}

// Stop runs `kong stop` and waits until every process of this Kong is gone.
func (k *Kong) Stop() error {
	defer k.cleanup()
	if k.MasterPid() == 0 {
		// No pid file (the prefix was removed under it?): whatever still
		// runs on this prefix is stopped as kong stop would, with SIGTERM.
		left := k.Processes()
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
		if len(left) > 0 {
			return fmt.Errorf("kong on %s had no pid file; sent SIGTERM to %v", k.Prefix, left)
		}
		return nil
	}
	out, err := k.Run("stop", "-p", k.Prefix)
	if err != nil {
		return fmt.Errorf("kong stop: %v\n%s", err, out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		left := k.Processes()
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kong stop left processes behind: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (k *Kong) cleanup() {
	if k.ownPrefix && k.MasterPid() == 0 {
		os.RemoveAll(k.Prefix)
		os.Remove(k.ymlPath)
	}
}

// ErrorLogPath is Kong's error log.
func (k *Kong) ErrorLogPath() string { return filepath.Join(k.Prefix, "logs", "error.log") }

// ErrorLog is Kong's error log so far.
func (k *Kong) ErrorLog() string {
	b, _ := os.ReadFile(k.ErrorLogPath())
	return string(b)
}

// ConfigParse runs `kong config parse` on yml with env's settings (the
// plugins and their -dump commands), as Kong checks a declarative file at
// load: nil when Kong accepts it, else Kong's message. DB-less, and with
// Kong/kong#7583 worked around (see parseFix).
func ConfigParse(exe string, env []string, yml []byte) error {
	dir, err := os.MkdirTemp("", "kong-parse-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "kong.yml")
	if err := os.WriteFile(file, yml, 0o644); err != nil {
		return err
	}
	shadow := filepath.Join(dir, "lua", "kong", "runloop", "plugin_servers", "init.lua")
	if err := os.MkdirAll(filepath.Dir(shadow), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(shadow, []byte(parseFix), 0o644); err != nil {
		return err
	}
	lua := filepath.Join(dir, "lua")
	cmd := exec.Command(exe, "config", "parse", file)
	cmd.Env = append(cmd.Env, "PATH="+os.Getenv("PATH"), "HOME="+dir, "KONG_PREFIX="+filepath.Join(dir, "prefix"), "KONG_DATABASE=off",
		"KONG_LUA_PATH_OVERRIDE="+lua+"/?.lua;"+lua+"/?/init.lua;")
	cmd.Env = append(cmd.Env, env...)
	if err := os.Mkdir(filepath.Join(dir, "prefix"), 0o755); err != nil {
		return err
	}
	out, err := cmd.CombinedOutput()
	text := strings.TrimSpace(parseNoise.ReplaceAllString(string(out), ""))
	if err != nil {
		return fmt.Errorf("%s", text)
	}
	if !strings.Contains(text, "parse successful") {
		return fmt.Errorf("kong config parse: unexpected output %q", text)
	}
	return nil
}

// parseNoise is what `kong config parse` prints beside its verdict: a
// warning per plugin server started outside Kong (as subgate's are), the
// hint to run verbose, the headline of a refusal.
var parseNoise = regexp.MustCompile(`(?m)^(\S+ \S+ \[warn\] start_command undefined for pluginserver \S+; assuming external process management|\s*Run with --v \(verbose\) or --vv \(debug\) for more details|Error: Failed parsing:)\s*$\n?`)

// parseFix works around Kong/kong#7583, still in 3.9.3: `kong config
// parse` with a plugin server configured fails with "attempt to index
// upvalue 'kong' (a nil value)", because kong.runloop.plugin_servers (and
// its process module) keep the global `kong` in a local when loaded, and
// the CLI loads them (through kong.db.declarative) before it creates that
// global (kong/cmd/config.lua). Kong's CLI puts KONG_LUA_PATH_OVERRIDE
// first on package.path (bin/kong); this module, found there first, loads
// Kong's own with a stand-in global that reads through to the real one once
// the CLI has made it, and changes nothing else.
const parseFix = `local override = os.getenv("KONG_LUA_PATH_OVERRIDE") or ""
local path = package.path:sub(1, #override) == override and package.path:sub(#override + 1) or package.path
local file = assert(package.searchpath("kong.runloop.plugin_servers", path))
if rawget(_G, "kong") ~= nil then
  return dofile(file)
end
local standin
standin = setmetatable({}, { __index = function(_, k)
  local real = rawget(_G, "kong")
  if real == nil or real == standin then
    return nil
  end
  return real[k]
end })
rawset(_G, "kong", standin)
local ok, m = pcall(dofile, file)
rawset(_G, "kong", nil)
assert(ok, m)
return m
`

func freePorts(n int) ([]string, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	return out, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
