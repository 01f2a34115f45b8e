package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/subgate/subgate/pkg/supervise"
	"github.com/subgate/subgate/spec/gateway"
	"github.com/subgate/subgate/spec/kongsim"
	"github.com/subgate/subgate/spec/realkong"
)

// The image's paths (docker/Dockerfile) in kong/plugins.env, which a test
// machine replaces with its own.
const (
	ImageBinDir    = "/usr/local/lib/subgate"
	ImageSocketDir = "/var/run/subgate"
)

// Deployment is kong/plugins.env as this machine runs it: the shipped
// entries with the image's binary and socket directories replaced, and
// every -metrics-addr moved to a free loopback port.
type Deployment struct {
	Env       []string           // every entry, rewritten (KONG_* for Kong, SUBGATE_* for the supervisor)
	Servers   []supervise.Server // what the supervisor runs
	Metrics   map[string]string  // plugin -> its metrics address
	SocketDir string
}

var metricsFlag = regexp.MustCompile(`-metrics-addr \S+`)

// LoadDeployment reads the env file at path. only, when not empty, keeps
// those plugin servers alone (KONG_PLUGINS and KONG_PLUGINSERVER_NAMES
// shortened to match).
func LoadDeployment(path, binDir, socketDir string, only ...string) (*Deployment, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := supervise.ReadEnvFile(f, func(string) (string, bool) { return "", false })
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	d := &Deployment{Metrics: map[string]string{}, SocketDir: socketDir}
	kept := func(name string) bool {
		if len(only) == 0 {
			return true
		}
		for _, o := range only {
			if o == name {
				return true
			}
		}
		return false
	}
	values := map[string]string{}
	for _, e := range entries {
		k, v, _ := strings.Cut(e, "=")
		v = strings.ReplaceAll(v, ImageBinDir, binDir)
		v = strings.ReplaceAll(v, ImageSocketDir, socketDir)
		values[k] = v
	}
	var names []string
	for _, n := range strings.Split(values["KONG_PLUGINSERVER_NAMES"], ",") {
		if n = strings.TrimSpace(n); n != "" && kept(n) {
			names = append(names, n)
		}
	}
	if len(only) > 0 {
		values["KONG_PLUGINSERVER_NAMES"] = strings.Join(names, ",")
		values["KONG_PLUGINS"] = strings.Join(append([]string{"bundled"}, names...), ",")
	}
	for _, n := range names {
		k := supervise.Setting("SUBGATE", n, "START_CMD")
		cmd := values[k]
		if metricsFlag.MatchString(cmd) {
			port, err := freePort()
			if err != nil {
				return nil, err
			}
			addr := "127.0.0.1:" + port
			values[k] = metricsFlag.ReplaceAllString(cmd, "-metrics-addr "+addr)
			d.Metrics[n] = addr
		}
	}
	for _, e := range entries {
		k, _, _ := strings.Cut(e, "=")
		if server := serverOf(k); server != "" && !kept(server) {
			continue
		}
		d.Env = append(d.Env, k+"="+values[k])
	}
	if d.Servers, err = supervise.FromEnv(d.Lookup); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// serverOf is the plugin a per-server setting belongs to ("" for others):
// KONG_PLUGINSERVER_JWT_CLAIMS_SOCKET -> jwt-claims.
func serverOf(key string) string {
	for _, prefix := range []string{"KONG_PLUGINSERVER_", "SUBGATE_PLUGINSERVER_"} {
		rest, ok := strings.CutPrefix(key, prefix)
		if !ok || rest == "NAMES" {
			continue
		}
		for _, what := range []string{"_SOCKET", "_QUERY_CMD", "_START_CMD"} {
			if n, ok := strings.CutSuffix(rest, what); ok {
				return strings.ReplaceAll(strings.ToLower(n), "_", "-")
			}
		}
	}
	return ""
}

// Lookup reads one setting.
func (d *Deployment) Lookup(key string) (string, bool) {
	for _, e := range d.Env {
		if k, v, _ := strings.Cut(e, "="); k == key {
			return v, true
		}
	}
	return "", false
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port), nil
}

// Output collects the supervisor's output: the plugin servers' lines,
// "[name:pid] " first, and its own.
type Output struct {
	mu  sync.Mutex
	buf bytes.Buffer
	tee io.Writer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.tee != nil {
		_, _ = o.tee.Write(p)
	}
	return o.buf.Write(p)
}

// String is everything written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// Of is what the plugin server name wrote, across its processes, without
// the "[name:pid] " prefix.
func (o *Output) Of(name string) string {
	var b strings.Builder
	for _, line := range strings.Split(o.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "["+name+":"); ok {
			if i := strings.Index(rest, "] "); i >= 0 {
				b.WriteString(rest[i+2:])
				b.WriteByte('\n')
			}
		}
	}
	return b.String()
}

// EdgeOptions say how an Edge runs.
type EdgeOptions struct {
	BinDir     string // the compiled plugin binaries
	PluginsEnv string // kong/plugins.env
	Plugins    []string
	// KongYML is the declarative config, its addresses already this
	// machine's (RewriteKongYML).
	KongYML []byte
	// Kong is a real Kong executable (realkong.Find); "" runs the stand-in.
	Kong    string
	Workers int // Kong's nginx_worker_processes (real Kong only; 0: 1)
	// MainEnv lists the names declared with Kong's nginx_main_env ("NAME" or
	// "NAME=value"): with TZ, the plugin servers' whole environment. nil:
	// read KONG_NGINX_MAIN_ENV from this process as Kong would.
	MainEnv  []string
	LogLevel kongsim.Level // Kong's log_level (0: notice)
	// KongEnv is added to Kong's environment (its env vault reads it).
	KongEnv []string
	// KongSettings are further kong.conf settings (the stand-in models
	// router_flavor only).
	KongSettings map[string]string
	// KongUser is nginx_user and KongPrefix Kong's prefix (real Kong only;
	// "": realkong's defaults).
	KongUser, KongPrefix string
	// KongProxy and KongAdmin are Kong's listen addresses (real Kong only;
	// "": free loopback ports).
	KongProxy, KongAdmin string
	// Output receives the plugin servers' output too (nil: kept only).
	Output io.Writer
	// Credential runs the plugin servers as another user.
	Credential *syscall.Credential
}

// Edge is the gateway serving a kong.yml through the plugin servers, run
// as the deployment runs them (supervised, outside Kong): either the
// stand-in (spec/gateway) or a real Kong.
type Edge struct {
	URL, AdminURL string
	Kong          *realkong.Kong   // nil for the stand-in
	Gateway       *gateway.Gateway // nil for a real Kong
	Deployment    *Deployment
	Supervisor    *supervise.Supervisor
	Output        *Output
	Infos         map[string]kongsim.Info // each plugin's -dump, as Kong read it
	// Log is the stand-in's error log model (nil for a real Kong, whose
	// log is Kong.ErrorLog()).
	Log     *kongsim.ErrorLog
	servers map[string]*kongsim.Server

	closers []func()
}

// StartEdge starts the plugin servers and the gateway.
func StartEdge(o EdgeOptions) (_ *Edge, err error) {
	e := &Edge{Output: &Output{tee: o.Output}, Infos: map[string]kongsim.Info{}}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	dir, err := kongsim.PrefixDir()
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { os.RemoveAll(dir) })
	if o.Credential != nil {
		if err := os.Chown(dir, int(o.Credential.Uid), int(o.Credential.Gid)); err != nil {
			return nil, err
		}
	}
	if e.Deployment, err = LoadDeployment(o.PluginsEnv, o.BinDir, dir, o.Plugins...); err != nil {
		return nil, err
	}
	declared := o.MainEnv
	if declared == nil {
		if declared, err = supervise.MainEnvFromProcess(); err != nil {
			return nil, err
		}
	}
	env, err := supervise.WorkerEnv(declared, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	e.Supervisor = supervise.New(e.Deployment.Servers, supervise.Options{Env: env, Output: e.Output, Credential: o.Credential})
	e.Supervisor.Start()
	e.closers = append(e.closers, func() { e.Supervisor.Stop(10 * time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err = e.Supervisor.WaitReady(ctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, e.Output)
	}
	for _, s := range e.Deployment.Servers {
		q, _ := e.Deployment.Lookup(supervise.Setting("KONG", s.Name, "QUERY_CMD"))
		if e.Infos[s.Name], err = kongsim.Dump(q); err != nil {
			return nil, err
		}
	}

	if o.Kong != "" {
		level := ""
		if o.LogLevel != 0 {
			level = o.LogLevel.String()
		}
		e.Kong, err = realkong.Start(realkong.Options{Exe: o.Kong, Env: append(append([]string(nil), e.Deployment.Env...), o.KongEnv...),
			DeclarativeConfig: o.KongYML, Workers: o.Workers, LogLevel: level, Settings: o.KongSettings, User: o.KongUser, Prefix: o.KongPrefix,
			Proxy: o.KongProxy, Admin: o.KongAdmin})
		if err != nil {
			return nil, err
		}
		e.closers = append(e.closers, func() { _ = e.Kong.Stop() })
		e.URL, e.AdminURL = e.Kong.ProxyURL, e.Kong.AdminURL
		return e, nil
	}

	e.Log = kongsim.NewErrorLog(o.LogLevel)
	e.servers = map[string]*kongsim.Server{}
	for _, s := range e.Deployment.Servers {
		e.servers[s.Name] = kongsim.Connect(e.Infos[s.Name], s.Socket, e.Log)
	}
	if e.Gateway, err = gateway.Load(o.KongYML, nil, e.servers, nil); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	e.Gateway.Log = e.Log
	e.Gateway.RouterFlavor = o.KongSettings["router_flavor"]
	gw, err := serve(e.Gateway)
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { _ = gw.Close() })
	e.URL = "http://" + gw.Addr
	admin, err := serve(e.Gateway.Admin())
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { _ = admin.Close() })
	e.AdminURL = "http://" + admin.Addr
	return e, nil
}

func serve(h http.Handler) (*http.Server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, Addr: l.Addr().String()}
	go func() { _ = srv.Serve(l) }()
	return srv, nil
}

// Real reports whether a real Kong serves.
func (e *Edge) Real() bool { return e.Kong != nil }

// Close stops everything, last started first.
func (e *Edge) Close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
	e.closers = nil
}

// Pid is the plugin server's current process.
func (e *Edge) Pid(name string) int {
	for _, st := range e.Supervisor.Status() {
		if st.Name == name {
			return st.Pid
		}
	}
	return 0
}

// Kill kills the plugin server's process with SIGKILL, as a crash would,
// and returns its pid; the supervisor respawns it (see WaitRespawned).
func (e *Edge) Kill(name string) (int, error) {
	pid := e.Pid(name)
	if pid == 0 {
		return 0, fmt.Errorf("%s: no process", name)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return 0, err
	}
	if s := e.servers[name]; s != nil {
		s.Drop()
	}
	return pid, nil
}

// WaitRespawned waits until the plugin server runs in a process other than
// old and its socket accepts connections.
func (e *Edge) WaitRespawned(name string, old int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		for _, st := range e.Supervisor.Status() {
			if st.Name == name && st.Pid != old && st.Running && st.Err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s was not respawned within %v", name, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pluginLine is a line of Kong's error log written by Kong's plugin-server
// code or a plugin's kong.log.* call, as the real Kong writes it:
// "2026/12/03 13:25:05 [error] 21421#21421: *645 [kong] pb_rpc.lua:233 msg,
// client: ..., request_id: ...".
var pluginLine = regexp.MustCompile(`^\S+ \S+ \[(\w+)\] \d+#\d+: (?:\*\d+ )?(\[kong\] (?:pb_rpc|plugin)\.lua:\d+ .*?)(?:, client: .*)?$`)

// PluginLog is what an operator reads of the plugins in Kong's error log at
// its configured level: "[level] [kong] file.lua:line message" lines, from
// Kong's plugin-server code and the plugins' kong.log.* calls, in order.
// The same form for both gateways, so the stand-in can be held to Kong.
func (e *Edge) PluginLog() []string {
	var out []string
	if e.Kong == nil {
		for _, line := range strings.Split(e.Log.Seen(), "\n") {
			if strings.Contains(line, "[kong] pb_rpc.lua:") || strings.Contains(line, "[kong] plugin.lua:") {
				out = append(out, line)
			}
		}
		return out
	}
	for _, line := range strings.Split(e.Kong.ErrorLog(), "\n") {
		if m := pluginLine.FindStringSubmatch(line); m != nil {
			out = append(out, "["+m[1]+"] "+m[2])
		}
	}
	return out
}

// RewriteKongYML makes the shipped kong.yml this machine's: each
// "host:port" of hosts replaced, each plugin config given to rewrite (nil:
// none), and each file-log plugin's path set to fileLog ("": kept).
func RewriteKongYML(yml []byte, hosts map[string]string, rewrite func(plugin string, config map[string]any), fileLog string) ([]byte, error) {
	text := string(yml)
	for from, to := range hosts {
		text = strings.ReplaceAll(text, from, to)
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return nil, fmt.Errorf("kong.yml: %w", err)
	}
	plugins := func(v any) {
		list, _ := v.([]any)
		for _, p := range list {
			pm, _ := p.(map[string]any)
			name, _ := pm["name"].(string)
			cfg, _ := pm["config"].(map[string]any)
			if cfg == nil {
				continue
			}
			// Anchors (*jwt) share one map between routes: a copy each.
			cfg = deepCopy(cfg).(map[string]any)
			pm["config"] = cfg
			if name == "file-log" && fileLog != "" {
				cfg["path"] = fileLog
			}
			if rewrite != nil && name != "file-log" {
				rewrite(name, cfg)
			}
		}
	}
	plugins(doc["plugins"])
	services, _ := doc["services"].([]any)
	for _, s := range services {
		sm, _ := s.(map[string]any)
		plugins(sm["plugins"])
		routes, _ := sm["routes"].([]any)
		for _, r := range routes {
			rm, _ := r.(map[string]any)
			plugins(rm["plugins"])
		}
	}
	return yaml.Marshal(doc)
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[k] = deepCopy(x)
		}
		return m
	case []any:
		l := make([]any, len(t))
		for i, x := range t {
			l[i] = deepCopy(x)
		}
		return l
	}
	return v
}

// FileLog reads the JSON lines file-log wrote to path (none yet: empty).
func FileLog(path string) ([]map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	var out []map[string]any
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var entry map[string]any
		if err := json.Unmarshal(line, &entry); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, entry)
	}
	return out, nil
}

// WithPluginServers writes the env file from (kong/plugins.env) to to with
// more plugin servers, each set up as the shipped ones are: its binary
// beside theirs, its socket beside theirs, no metrics listener. The
// benchmarks add their test plugins (spec/testdata) with it.
func WithPluginServers(from, to string, names ...string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	s := string(b)
	list := strings.Join(names, ",") + ","
	s = strings.Replace(s, "KONG_PLUGINS=", "KONG_PLUGINS="+list, 1)
	s = strings.Replace(s, "KONG_PLUGINSERVER_NAMES=", "KONG_PLUGINSERVER_NAMES="+list, 1)
	for _, name := range names {
		n := strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		s += fmt.Sprintf("\nKONG_PLUGINSERVER_%s_SOCKET=%s/%s.socket\nKONG_PLUGINSERVER_%s_QUERY_CMD=%s/%s -dump\nSUBGATE_PLUGINSERVER_%s_START_CMD=%s/%s -kong-prefix %s\n",
			n, ImageSocketDir, name, n, ImageBinDir, name, n, ImageBinDir, name, ImageSocketDir)
	}
	return os.WriteFile(to, []byte(s), 0o600)
}
