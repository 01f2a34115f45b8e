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
	"sort"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/subgate/subgate/spec/kongsim"
)

// Config is the part of Kong's declarative format the gateway reads.
type Config struct {
	FormatVersion string    `yaml:"_format_version"`
	Services      []Service `yaml:"services"`
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
	routes []*route
	client *http.Client
	// Observe, when set, sees every request's model after its chain ran
	// (the specs count PDK calls with it).
	Observe func(route string, req *kongsim.Request)
}

type route struct {
	name      string
	paths     []string
	stripPath bool
	service   *url.URL
	plugins   []*instance
}

type instance struct {
	server *kongsim.Server
	config []byte
	mu     sync.Mutex
	id     int32
}

// Load reads kong.yml. hosts maps "host:port" strings in it to the
// addresses to use instead (the compose network's names to loopback
// addresses); servers are the running plugin servers by plugin name;
// rewrite, when not nil, may change a plugin's config before it is sent
// (the demo points Redis settings at an embedded server with it).
func Load(kongYML []byte, hosts map[string]string, servers map[string]*kongsim.Server, rewrite func(plugin string, config map[string]any)) (*Gateway, error) {
	text := string(kongYML)
	for from, to := range hosts {
		text = strings.ReplaceAll(text, from, to)
	}
	var cfg Config
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		return nil, fmt.Errorf("kong.yml: %w", err)
	}
	if cfg.FormatVersion != "3.0" {
		return nil, fmt.Errorf("kong.yml: _format_version %q, want \"3.0\"", cfg.FormatVersion)
	}
	g := &Gateway{client: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	seq := 0
	for _, svc := range cfg.Services {
		u, err := url.Parse(svc.URL)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("service %s: bad url %q", svc.Name, svc.URL)
		}
		for _, r := range svc.Routes {
			rt := &route{name: r.Name, paths: r.Paths, stripPath: r.StripPath == nil || *r.StripPath, service: u}
			for _, p := range r.Plugins {
				srv, ok := servers[p.Name]
				if !ok {
					return nil, fmt.Errorf("route %s: plugin %s has no running plugin server", r.Name, p.Name)
				}
				for _, ph := range srv.Info.Phases {
					if ph != "access" {
						return nil, fmt.Errorf("plugin %s declares phase %q, which the gateway does not model", p.Name, ph)
					}
				}
				seq++
				given := jsonish(p.Config)
				if rewrite != nil && given != nil {
					rewrite(p.Name, given)
				}
				conf, err := kongsim.EncodeConfig(srv.Info, given, kongsim.Meta{
					RouteID: "route-" + r.Name, ServiceID: "service-" + svc.Name,
					PluginID: fmt.Sprintf("plugin-%s-%s", r.Name, p.Name), Seq: seq})
				if err != nil {
					return nil, fmt.Errorf("route %s: %w", r.Name, err)
				}
				in := &instance{server: srv, config: conf}
				if in.id, err = srv.StartInstance(conf); err != nil {
					return nil, fmt.Errorf("route %s: starting %s: %w", r.Name, p.Name, err)
				}
				rt.plugins = append(rt.plugins, in)
			}
			sort.SliceStable(rt.plugins, func(i, j int) bool {
				return rt.plugins[i].server.Info.Priority > rt.plugins[j].server.Info.Priority
			})
			g.routes = append(g.routes, rt)
		}
	}
	return g, nil
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

// kongError is Kong's kong.response.error body for a status.
func kongError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

// ServeHTTP runs the chain and proxies.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := kongsim.NormalizePath(r.URL.EscapedPath())
	rt, prefix := g.match(path)
	if rt == nil {
		kongError(w, http.StatusNotFound, "no Route matched with those values")
		return
	}
	req := kongsim.NewRequest(r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header)
	err := g.chain(rt, req)
	if g.Observe != nil {
		g.Observe(rt.name, req)
	}
	if exit := req.Exited(); exit != nil {
		for k, vs := range exit.Headers {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
		w.WriteHeader(exit.Status)
		_, _ = w.Write(exit.Body)
		return
	}
	if err != nil {
		// Kong's pb_rpc: any event error other than a restartable one is
		// kong.response.error(500). Never a pass-through.
		kongError(w, http.StatusInternalServerError, "An unexpected error occurred")
		return
	}
	g.proxy(w, r, rt, prefix, path, req)
}

// chain runs the access phase of each plugin in order; it stops at the
// first exit. A "closed" or "no plugin instance" error makes Kong restart
// the instance and retry the event (pb_rpc.lua handle_event); the gateway
// retries once.
func (g *Gateway) chain(rt *route, req *kongsim.Request) error {
	for _, in := range rt.plugins {
		err := in.handle(req)
		if errors.Is(err, kongsim.ErrExited) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", in.server.Info.Name, err)
		}
	}
	return nil
}

func (in *instance) handle(req *kongsim.Request) error {
	in.mu.Lock()
	id := in.id
	in.mu.Unlock()
	err := in.server.HandleEvent(id, "access", req)
	if err == nil || errors.Is(err, kongsim.ErrExited) {
		return err
	}
	msg := strings.ToLower(err.Error())
	if !strings.Contains(msg, "closed") && !strings.Contains(msg, "no plugin instance") {
		return err
	}
	in.mu.Lock()
	newID, serr := in.server.StartInstance(in.config)
	if serr == nil {
		in.id = newID
	}
	in.mu.Unlock()
	if serr != nil {
		return fmt.Errorf("restarting instance: %w (after %v)", serr, err)
	}
	return in.server.HandleEvent(newID, "access", req)
}

var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func (g *Gateway) proxy(w http.ResponseWriter, r *http.Request, rt *route, prefix, path string, req *kongsim.Request) {
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
		kongError(w, http.StatusBadGateway, "An invalid response was received from the upstream server")
		return
	}
	out.Header = req.Headers.Clone()
	for _, h := range hopByHop {
		out.Header.Del(h)
	}
	resp, err := g.client.Do(out)
	if err != nil {
		kongError(w, http.StatusBadGateway, "An invalid response was received from the upstream server")
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}
