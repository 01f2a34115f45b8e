// Package gateway is a local stand-in for Kong's proxy path: it reads a
// declarative kong.yml, matches each HTTP request to a route as Kong's
// router does (longest path prefix), runs the route's plugins in PRIORITY
// order through the real plugin binaries (spec/kongsim), and proxies what
// is let through to the route's service. The end-to-end specs and the local
// demo use it; production runs in Kong.
package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/subgate/subgate/pkg/kongschema"
	"github.com/subgate/subgate/spec/kongsim"
)

// Config is the part of Kong's declarative format the gateway reads.
type Config struct {
	FormatVersion string    `yaml:"_format_version"`
	Services      []Service `yaml:"services"`
	Plugins       []Plugin  `yaml:"plugins"` // global ones (only bundled log plugins are modelled)
}

// Service is an upstream with its routes.
type Service struct {
	Name   string  `yaml:"name"`
	URL    string  `yaml:"url"`
	Routes []Route `yaml:"routes"`
}

// Route is a set of path prefixes and the plugins they run.
type Route struct {
	Name      string   `yaml:"name"`
	Paths     []string `yaml:"paths"`
	StripPath *bool    `yaml:"strip_path"`
	Plugins   []Plugin `yaml:"plugins"`
}

// Plugin is a plugin enabled on a route.
type Plugin struct {
	Name   string         `yaml:"name"`
	Config map[string]any `yaml:"config"`
}

// Gateway serves requests through the plugins.
type Gateway struct {
	client *http.Client
	// Stdout receives file-log lines whose path is /dev/stdout (the
	// demo's terminal); nil drops them.
	Stdout io.Writer
	logMu  sync.Mutex

	// Observe, when set, sees every request's model after its chain ran
	// (the specs count PDK calls with it).
	Observe func(route string, req *kongsim.Request)
	// Log is Kong's error log, where the gateway writes what Kong's
	// plugin-server code logs (plugin.lua, pb_rpc.lua). Load sets a fresh
	// one at kongsim.DefaultLevel; replace it before serving.
	Log *kongsim.ErrorLog
	// RouterFlavor is kong.conf's router_flavor ("": Kong 3.9's default,
	// traditional_compatible).
	RouterFlavor string

	hosts   map[string]string
	env     map[string]string // what the env vault resolves references from (environ)
	servers map[string]*kongsim.Server
	rewrite func(plugin string, config map[string]any)

	mu     sync.RWMutex
	routes []*route
	seq    int // Kong's shared "plugins_iterator:__seq__" counter

	imu       sync.Mutex
	instances map[string]*instanceInfo // plugin.lua running_instances, by plugin id
}

type route struct {
	name      string
	paths     []string
	stripPath bool
	service   *url.URL
	plugins   []*pluginConf
	logs      []string // file-log paths: the route's own and the global ones
}

// bundledLogPlugin is the one Kong log plugin the stand-in models:
// file-log, which appends kong.log.serialize()'s entry as a JSON line to
// config.path in the log phase (kong/plugins/file-log/handler.lua).
const bundledLogPlugin = "file-log"

func logPath(p Plugin) (string, error) {
	path, _ := p.Config["path"].(string)
	if path == "" {
		return "", fmt.Errorf("plugin %s: config.path: required field missing", p.Name)
	}
	return path, nil
}

// pluginConf is one plugin enabled on one route, with the config Kong
// sends at cmd_start_instance (kongsim.EncodeConfig).
type pluginConf struct {
	server *kongsim.Server
	name   string
	id     string // the plugin entity's id: kong.plugin.get_id(), Kong's key for its instance
	seq    int    // the config's __seq__
	config []byte
}

// instanceInfo is one entry of plugin.lua's running_instances: a claim
// while an instance is being started (started false), then its id.
type instanceInfo struct {
	id      int32
	started bool
	seq     int
	plugin  string // set once started, as instance_info.plugin_name is
}

// Load reads kong.yml and validates and encodes every plugin config, as
// Kong refuses a declarative config with any bad entity: an error names the
// route and the plugin, and nothing of the file is used. It starts no
// plugin instance: Kong starts one inside the first request that reaches a
// plugin config (see instanceID). hosts maps "host:port" strings in kong.yml
// to the addresses to use instead (the compose network's names to loopback
// addresses); servers are the running plugin servers by plugin name;
// rewrite, when not nil, may change a plugin's config before it is encoded
// (the demo points Redis settings at an embedded server with it).
func Load(kongYML []byte, hosts map[string]string, servers map[string]*kongsim.Server, rewrite func(plugin string, config map[string]any)) (*Gateway, error) {
	g := &Gateway{
		client:    &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		Log:       kongsim.NewErrorLog(kongsim.DefaultLevel),
		hosts:     hosts,
		servers:   servers,
		rewrite:   rewrite,
		instances: map[string]*instanceInfo{},
		env:       environ(),
	}
	routes, seq, err := g.parse(kongYML, 0)
	if err != nil {
		return nil, err
	}
	g.routes, g.seq = routes, seq
	return g, nil
}

// environ is the environment Kong's env vault reads: the Kong process's
// own, read in the nginx master at init before nginx clears the workers'
// (kong/vaults/env/init.lua). The stand-in's analogue is this process's.
func environ() map[string]string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// Reload replaces the configuration, as a DB-less Kong's POST /config does:
// a refused file changes nothing. Every plugin config gets a new __seq__
// (Kong re-reads every plugin entity and plugins_iterator.lua numbers each
// config anew), so the next request to each starts a new instance and
// closes the old one (plugin.lua get_instance_id).
func (g *Gateway) Reload(kongYML []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	routes, seq, err := g.parse(kongYML, g.seq)
	if err != nil {
		return err
	}
	g.routes, g.seq = routes, seq
	return nil
}

func (g *Gateway) parse(kongYML []byte, seq int) ([]*route, int, error) {
	text := string(kongYML)
	for from, to := range g.hosts {
		text = strings.ReplaceAll(text, from, to)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return nil, 0, fmt.Errorf("kong.yml: %w", err)
	}
	kongschema.AsKongReadsYAML(&doc) // on, off, yes, no are booleans to Kong
	var cfg Config
	if err := doc.Decode(&cfg); err != nil {
		return nil, 0, fmt.Errorf("kong.yml: %w", err)
	}
	if err := knownFields([]byte(text)); err != nil {
		return nil, 0, err
	}
	if cfg.FormatVersion != "3.0" {
		return nil, 0, fmt.Errorf("kong.yml: _format_version %q, want \"3.0\"", cfg.FormatVersion)
	}
	var global []string
	for _, p := range cfg.Plugins {
		if p.Name != bundledLogPlugin {
			return nil, 0, fmt.Errorf("plugins: global plugin %s is not modelled by the stand-in", p.Name)
		}
		path, err := logPath(p)
		if err != nil {
			return nil, 0, err
		}
		global = append(global, path)
	}
	var routes []*route
	for _, svc := range cfg.Services {
		u, err := url.Parse(svc.URL)
		if err != nil || u.Host == "" {
			return nil, 0, fmt.Errorf("service %s: bad url %q", svc.Name, svc.URL)
		}
		for _, r := range svc.Routes {
			rt := &route{name: r.Name, paths: r.Paths, stripPath: r.StripPath == nil || *r.StripPath, service: u, logs: global}
			seen := map[string]bool{}
			for _, p := range r.Plugins {
				if p.Name == bundledLogPlugin {
					path, err := logPath(p)
					if err != nil {
						return nil, 0, fmt.Errorf("route %s: %w", r.Name, err)
					}
					rt.logs = append(slices.Clone(rt.logs), path)
					continue
				}
				srv, ok := g.servers[p.Name]
				if !ok {
					return nil, 0, fmt.Errorf("route %s: plugin %s has no running plugin server", r.Name, p.Name)
				}
				if seen[p.Name] {
					return nil, 0, fmt.Errorf("route %s: plugin %s is configured twice (Kong allows one per route)", r.Name, p.Name)
				}
				seen[p.Name] = true
				for _, ph := range srv.Info.Phases {
					if ph != "access" {
						return nil, 0, fmt.Errorf("route %s: plugin %s declares phase %q, which the gateway does not model", r.Name, p.Name, ph)
					}
				}
				seq++
				given := jsonish(p.Config)
				if g.rewrite != nil && given != nil {
					g.rewrite(p.Name, given)
				}
				pc := &pluginConf{server: srv, name: p.Name, id: fmt.Sprintf("plugin-%s-%s", r.Name, p.Name), seq: seq}
				conf, err := kongsim.EncodeConfig(srv.Info, given, kongsim.Meta{
					RouteID: "route-" + r.Name, ServiceID: "service-" + svc.Name, PluginID: pc.id, Seq: seq, Env: g.env})
				if err != nil {
					return nil, 0, fmt.Errorf("route %s: plugin %s: %w", r.Name, p.Name, err)
				}
				pc.config = conf
				rt.plugins = append(rt.plugins, pc)
			}
			sort.SliceStable(rt.plugins, func(i, j int) bool {
				return rt.plugins[i].server.Info.Priority > rt.plugins[j].server.Info.Priority
			})
			routes = append(routes, rt)
		}
	}
	return routes, seq, nil
}

// knownFields refuses a service or route field Kong does not know (a typo
// such as pathz), as Kong refuses the whole file at load
// (kongschema.KnownField).
func knownFields(yml []byte) error {
	var raw struct {
		Services []map[string]any `yaml:"services"`
	}
	if err := yaml.Unmarshal(yml, &raw); err != nil {
		return fmt.Errorf("kong.yml: %w", err)
	}
	for _, svc := range raw.Services {
		for k := range svc {
			if !kongschema.KnownField("services", k) {
				return fmt.Errorf("service %v: %s: unknown field", svc["name"], k)
			}
		}
		routes, _ := svc["routes"].([]any)
		for _, r := range routes {
			rm, _ := r.(map[string]any)
			for k := range rm {
				if !kongschema.KnownField("routes", k) {
					return fmt.Errorf("route %v: %s: unknown field", rm["name"], k)
				}
			}
		}
	}
	return nil
}

// jsonish turns YAML-decoded values into what encoding/json would decode
// (ints become float64 as in Kong's cjson round trip), so schema checks see
// one representation.
func jsonish(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	b, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

func (g *Gateway) match(path string) (*route, string) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	var best *route
	bestLen := -1
	prefix := ""
	for _, r := range g.routes {
		for _, p := range r.paths {
			if strings.HasPrefix(path, p) && len(p) > bestLen {
				best, bestLen, prefix = r, len(p), p
			}
		}
	}
	return best, prefix
}

// ServeHTTP runs the chain and proxies.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Go's server keeps Host out of the header map; nginx (and Kong's
	// get_headers) have it as a header line like any other.
	head := r.Header.Clone()
	if r.Host != "" {
		head["Host"] = append([]string{r.Host}, head["Host"]...)
	}
	if status, msg := nginxRefuses(head); status != 0 {
		errorPage(w, r, status, msg)
		return
	}
	if strings.Contains(strings.ToLower(r.URL.EscapedPath()), "%00") {
		// nginx decodes the URI to match locations and refuses a NUL in it
		// (ngx_http_parse_complex_uri: "client sent invalid request", 400;
		// measured on Kong 3.9.3), before any plugin runs.
		errorPage(w, r, http.StatusBadRequest, "Bad request")
		return
	}
	path := kongsim.NormalizePath(r.URL.EscapedPath())
	rt, prefix := g.match(path)
	req := kongsim.NewRequest(r.Method, r.URL.EscapedPath(), r.URL.RawQuery, head)
	if rt != nil && g.RouterFlavor != "traditional" && !utf8.ValidString(path) {
		// Kong's ATC router (traditional_compatible and expressions) matches
		// the normalized path, and refuses one that is not UTF-8 once
		// decoded (kong/router/atc.lua exec; measured on Kong 3.9.3): no
		// route, and an error line per distinct path (negative cache). Only
		// the Lua router (traditional) hands such a path to the plugins.
		g.Log.Kong(kongsim.LogErr, "[lua] atc.lua:479: exec(): router returned an error: invalid utf-8 sequence, 404 Not Found will be returned for the current request")
		rt = nil
	}
	if rt == nil {
		responseError(w, r, req.ID, http.StatusNotFound, "no Route matched with those values")
		return
	}
	err := g.chain(rt, req)
	if g.Observe != nil {
		g.Observe(rt.name, req)
	}
	// Kong sends its request id upstream and to the client, exits included.
	w.Header().Set("X-Kong-Request-Id", req.ID)
	status := http.StatusInternalServerError
	switch exit := req.Exited(); {
	case exit != nil:
		for k, vs := range exit.Headers {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
		w.WriteHeader(exit.Status)
		_, _ = w.Write(exit.Body)
		status = exit.Status
	case err != nil:
		// Kong's pb_rpc: any event error other than a restartable one is
		// kong.response.error(500). Never a pass-through.
		responseError(w, r, req.ID, status, "An unexpected error occurred")
	default:
		status = g.proxy(w, r, rt, prefix, path, req)
	}
	g.logPhase(rt, req, status)
}

// logPhase runs the route's file-log plugins: one JSON line per request,
// the entry kong.log.serialize() returns.
func (g *Gateway) logPhase(rt *route, req *kongsim.Request, status int) {
	if len(rt.logs) == 0 {
		return
	}
	line, err := json.Marshal(req.Serialize(status, rt.name))
	if err != nil {
		return
	}
	line = append(line, '\n')
	g.logMu.Lock()
	defer g.logMu.Unlock()
	for _, path := range rt.logs {
		if path == "/dev/stdout" {
			if g.Stdout != nil {
				_, _ = g.Stdout.Write(line)
			}
			continue
		}
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			g.Log.Kong(kongsim.LogErr, "[kong] handler.lua [file-log] failed to open the file: %s", err)
			continue
		}
		_, _ = f.Write(line)
		f.Close()
	}
}

// chain runs the access phase of each plugin in order; it stops at the
// first exit.
func (g *Gateway) chain(rt *route, req *kongsim.Request) error {
	for _, pc := range rt.plugins {
		err := g.handleEvent(pc, "access", req, 0)
		if errors.Is(err, kongsim.ErrExited) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", pc.name, err)
		}
	}
	return nil
}

// maxEventRetries bounds the restarts of one event. Kong's handle_event
// retries by recursion without a bound; the gateway stops after this many
// so a broken plugin server fails a spec instead of hanging it.
const maxEventRetries = 10

// errStart is a failed StartInstance: plugin.lua raises it with error(),
// which skips pb_rpc.lua's restart logic and fails the request (500).
type errStart struct{ err error }

func (e errStart) Error() string { return "starting instance: " + e.err.Error() }
func (e errStart) Unwrap() error { return e.err }

// handleEvent is pb_rpc.lua's Rpc:handle_event: get (or start) the
// instance for the config, run the event; on an error naming "no plugin
// instance" or "closed", forget every instance of the plugin
// (reset_instance), log it at warn, and run the event again; any other
// error is logged and answered with 500.
func (g *Gateway) handleEvent(pc *pluginConf, phase string, req *kongsim.Request, retries int) error {
	id, err := g.instanceID(pc)
	var se errStart
	if errors.As(err, &se) {
		return err
	}
	if err == nil {
		err = pc.server.HandleEvent(id, phase, req)
	}
	if err == nil || errors.Is(err, kongsim.ErrExited) {
		return err
	}
	msg := strings.ToLower(err.Error())
	if strings.Contains(msg, "no plugin instance") || strings.Contains(msg, "closed") {
		g.resetInstances(pc.name)
		g.Log.Kong(kongsim.LogWarn, "[kong] pb_rpc.lua:378 %v", err)
		if retries >= maxEventRetries {
			return fmt.Errorf("%w (gave up after %d restarts)", err, retries)
		}
		return g.handleEvent(pc, phase, req, retries+1)
	}
	g.Log.Kong(kongsim.LogErr, "[kong] pb_rpc.lua:382 pluginserver error: %v", err)
	return err
}

// How long a request waits for an instance another request is starting
// (plugin.lua get_instance_id: SLEEP_STEP = 0.1, WAIT_TIME = 10).
const (
	claimSleepStep = 100 * time.Millisecond
	claimWaitTime  = 10 * time.Second
	claimMaxSteps  = int(claimWaitTime / claimSleepStep)
)

// instanceID is plugin.lua's get_instance_id, keyed by the plugin's id as
// Kong keys running_instances by kong.plugin.get_id(). A request that
// finds another one starting the instance polls every claimSleepStep, and
// gives up (dropping the claim) after claimMaxSteps. An instance of the
// same __seq__ is reused. Otherwise this request claims the key (or marks
// the existing entry as changing) and starts an instance itself; on failure
// it drops the claim, so the next request tries again, and raises errStart;
// on success after a config change it closes the old instance, ignoring
// any error. Kong runs this between coroutine yields of one worker; the
// lock makes each step between yields atomic in the same way.
func (g *Gateway) instanceID(pc *pluginConf) (int32, error) {
	g.imu.Lock()
	info := g.instances[pc.id]
	for waits := 0; info != nil && !info.started; {
		g.imu.Unlock()
		time.Sleep(claimSleepStep)
		g.imu.Lock()
		waits++
		if waits > claimMaxSteps {
			delete(g.instances, pc.id)
			g.imu.Unlock()
			//lint:ignore ST1005 Kong's own message (plugin.lua get_instance_id), word for word
			return 0, fmt.Errorf("Could not claim instance_id for %s (key: %s)", pc.name, pc.id)
		}
		info = g.instances[pc.id]
	}
	if info != nil && info.started && info.seq == pc.seq {
		id := info.id
		g.imu.Unlock()
		return id, nil
	}
	var oldID int32
	hadOld := false
	if info == nil {
		info = &instanceInfo{seq: pc.seq}
		g.instances[pc.id] = info
	} else {
		oldID, hadOld = info.id, true
		info.started = false
	}
	g.imu.Unlock()

	id, err := pc.server.StartInstance(pc.config)
	g.imu.Lock()
	if err != nil {
		delete(g.instances, pc.id)
		g.imu.Unlock()
		g.Log.Kong(kongsim.LogErr, "[kong] plugin.lua:283 starting instance: %v", err)
		return 0, errStart{err}
	}
	info.id, info.started, info.seq, info.plugin = id, true, pc.seq, pc.name
	g.imu.Unlock()
	if hadOld {
		_ = pc.server.CloseInstance(oldID)
	}
	return id, nil
}

// resetInstances is plugin.lua's reset_instances_for_plugin: forget every
// started instance of the plugin, on every route, since one plugin server
// serves them all.
func (g *Gateway) resetInstances(plugin string) {
	g.imu.Lock()
	defer g.imu.Unlock()
	for k, in := range g.instances {
		if in.plugin == plugin {
			delete(g.instances, k)
		}
	}
}

var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func (g *Gateway) proxy(w http.ResponseWriter, r *http.Request, rt *route, prefix, path string, req *kongsim.Request) int {
	up := *rt.service
	rest := path
	if rt.stripPath {
		rest = strings.TrimPrefix(path, prefix)
		if !strings.HasPrefix(rest, "/") {
			rest = "/" + rest
		}
	}
	up.Path = strings.TrimSuffix(up.Path, "/") + rest
	up.RawQuery = r.URL.RawQuery
	out, err := http.NewRequestWithContext(r.Context(), r.Method, up.String(), r.Body)
	if err != nil {
		errorPage(w, r, http.StatusBadGateway, "An invalid response was received from the upstream server")
		return http.StatusBadGateway
	}
	out.Header = req.Headers.Clone()
	out.Header.Del("Host") // the upstream's (preserve_host off)
	out.Header.Set("X-Kong-Request-Id", req.ID)
	for _, h := range hopByHop {
		out.Header.Del(h)
	}
	resp, err := g.client.Do(out)
	if err != nil {
		errorPage(w, r, http.StatusBadGateway, "An invalid response was received from the upstream server")
		return http.StatusBadGateway
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
	return resp.StatusCode
}
