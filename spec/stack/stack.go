// Package stack starts everything the end-to-end specs and the local demo
// run: Redis (a real redis-server behind a real Sentinel, or an embedded
// miniredis), the plugin servers from their compiled binaries, the demo
// identity and echo services, the seeded ownership pairs, and the local
// gateway serving kong/kong.yml. One place, so the demo shows exactly what
// the specs prove.
package stack

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/docker/demosvc"
	"github.com/subgate/subgate/pkg/ownership"
	"github.com/subgate/subgate/pkg/redisconn"
	"github.com/subgate/subgate/pkg/redistest"
	"github.com/subgate/subgate/spec/kongsim"
)

// The demo customers and their subscriptions.
const (
	Alice = "7d3e2a10-1c4b-4a5e-9f00-3c2b1a000001"
	Bob   = "7d3e2a10-1c4b-4a5e-9f00-3c2b1a000002"
)

// SeedCSV is the demo's ownership pairs, the same file the docker demo's
// seeding step imports: alice owns DE 1234; bob owns DE 5678 and FR 1234
// (ids are unique per country only). Relative to the repository root.
const SeedCSV = "docker/demo-subscriptions.csv"

// Options say where things listen. "127.0.0.1:0" picks a free port.
type Options struct {
	BinDir       string // compiled plugin binaries, one per plugin
	KongYML      string // path to kong.yml
	SeedCSV      string // path to the ownership pairs to import
	GatewayAddr  string
	AdminAddr    string // the Admin API model (gateway.Admin); "" serves none
	IdentityAddr string
	PaymentAddr  string
	EchoAddr     string
	// Miniredis uses an embedded miniredis instead of redis-server; it has
	// no Sentinel, so the plugins' Redis settings are pointed at it directly.
	Miniredis bool
	// Cluster runs a Redis Cluster instead (3 primaries, 3 replicas, from
	// redis-server and redis-cli) and points every plugin's Redis settings
	// at its seeds with cluster: true.
	Cluster bool
	// Direct points the plugins at the real redis-server by its address
	// (one Redis, no Sentinel) instead of through the stack's Sentinel.
	Direct   bool
	Progress io.Writer // where to say what starts; nil: nowhere
	// MainEnv lists the variables declared for the plugin servers with
	// nginx's `env` directive (Kong's nginx_main_env; "NAME" or
	// "NAME=value"); with TZ they are the servers' whole environment, as
	// the supervisor gives it (see supervise.WorkerEnv). nil: read
	// KONG_NGINX_MAIN_ENV from this process (unset: nothing declared).
	MainEnv []string
	// LogLevel is Kong's log_level for the error log (0: notice, Kong's
	// default).
	LogLevel kongsim.Level
	// PluginsEnv is kong/plugins.env ("": beside KongYML).
	PluginsEnv string
	// Kong, when set, is a real Kong executable (realkong.Find) serving the
	// routes; "" serves them with the stand-in (spec/gateway).
	Kong    string
	Workers int // Kong's nginx_worker_processes (real Kong only; 0: 1)
	// KongSettings are further kong.conf settings (the stand-in models
	// router_flavor only).
	KongSettings map[string]string
	// FileLog is where kong.yml's file-log plugins write ("": a file of the
	// stack's own, FileLogPath).
	FileLog string
	// PluginOutput receives the plugin servers' output as well (nil: kept
	// in Output only).
	PluginOutput io.Writer
	// Wrap, when set, wraps a demo service's handler ("identity",
	// "payment", "echo upstream"): the soak makes a JWKS unreachable with it.
	Wrap func(service string, h http.Handler) http.Handler
}

// Stack is the running set. Its Edge is the gateway: the stand-in or a
// real Kong, with the plugin servers under their supervisor.
type Stack struct {
	*Edge
	GatewayURL, AdminURL, IdentityURL, PaymentURL, EchoURL string
	Identity                                               *demosvc.Identity
	Payment                                                *demosvc.Payment
	Redis                                                  *redistest.Server  // nil with Miniredis or Cluster
	Sentinel                                               *redistest.Server  // nil with Miniredis or Cluster
	Cluster                                                *redistest.Cluster // set with Options.Cluster
	RDB                                                    redis.UniversalClient
	FileLogPath                                            string // where kong.yml's file-log writes

	seedCSV string
	rewrite func([]byte) ([]byte, error) // the shipped kong.yml to this stack's
	closers []func()
}

// Start starts everything; on any failure it stops what it started and
// says which part failed.
func Start(o Options) (_ *Stack, err error) {
	s := &Stack{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	say := func(format string, a ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format+"\n", a...)
		}
	}
	hosts := map[string]string{}
	var rewrite func(string, map[string]any)

	// Every redis record, a plugin's own or a subgate section's.
	pointRedis := func(to map[string]any) func(string, map[string]any) {
		var point func(cfg map[string]any)
		point = func(cfg map[string]any) {
			for k, v := range cfg {
				if sub, ok := v.(map[string]any); ok {
					if k == "redis" {
						cfg[k] = to
						continue
					}
					point(sub)
				}
			}
		}
		return func(_ string, cfg map[string]any) { point(cfg) }
	}

	switch {
	case o.Cluster:
		bin, err := exec.LookPath("redis-server")
		if err != nil {
			return nil, fmt.Errorf("redis-server not found: %w", err)
		}
		cli, err := exec.LookPath("redis-cli")
		if err != nil {
			return nil, fmt.Errorf("redis-cli not found: %w", err)
		}
		dir, err := os.MkdirTemp("", "subgate-cluster-")
		if err != nil {
			return nil, err
		}
		s.closers = append(s.closers, func() { os.RemoveAll(dir) })
		if s.Cluster, err = redistest.LaunchCluster(bin, cli, dir, redistest.ClusterOptions{Primaries: 3, Replicas: 1,
			// Small, so failovers take seconds; not so small that a busy CI
			// machine's slow answer to a ping fails a healthy node over.
			NodeTimeout: 2 * time.Second}); err != nil {
			return nil, fmt.Errorf("redis cluster: %w", err)
		}
		s.closers = append(s.closers, s.Cluster.Stop)
		seeds := s.Cluster.Seeds()
		say("redis: a Redis Cluster of 3 primaries and 3 replicas on %v", seeds)
		// The plugins' own client, which finds a promoted replica at once.
		if s.RDB, err = (redisconn.Config{Addresses: seeds, Cluster: true}).Client("redis"); err != nil {
			return nil, err
		}
		addrs := make([]any, len(seeds))
		for i, a := range seeds {
			addrs[i] = a
		}
		rewrite = pointRedis(map[string]any{"addresses": addrs, "cluster": true})
	case o.Miniredis:
		m := miniredis.NewMiniRedis()
		if err := m.Start(); err != nil {
			return nil, fmt.Errorf("embedded miniredis: %w", err)
		}
		s.closers = append(s.closers, m.Close)
		say("redis: embedded miniredis on %s (redis-server is not installed; no Sentinel, the plugins talk to it directly)", m.Addr())
		s.RDB = redis.NewClient(&redis.Options{Addr: m.Addr()})
		rewrite = pointRedis(map[string]any{"addresses": []any{m.Addr()}})
	default:
		bin, err := exec.LookPath("redis-server")
		if err != nil {
			return nil, fmt.Errorf("redis-server not found (install it, or use the embedded miniredis): %w", err)
		}
		dir, err := os.MkdirTemp("", "subgate-redis-")
		if err != nil {
			return nil, err
		}
		s.closers = append(s.closers, func() { os.RemoveAll(dir) })
		if s.Redis, err = redistest.Launch(bin, dir); err != nil {
			return nil, fmt.Errorf("redis-server: %w", err)
		}
		s.closers = append(s.closers, s.Redis.Stop)
		s.RDB = redis.NewClient(&redis.Options{Addr: s.Redis.Addr})
		if o.Direct {
			say("redis: redis-server on %s, the plugins pointed at it directly", s.Redis.Addr)
			rewrite = pointRedis(map[string]any{"addresses": []any{s.Redis.Addr}})
			break
		}
		sdir := filepath.Join(dir, "sentinel")
		_ = os.Mkdir(sdir, 0o700)
		if s.Sentinel, err = redistest.LaunchSentinel(bin, sdir, s.Redis, "subgate"); err != nil {
			return nil, fmt.Errorf("redis sentinel: %w", err)
		}
		s.closers = append(s.closers, s.Sentinel.Stop)
		say("redis: redis-server on %s, Sentinel on %s (master name \"subgate\")", s.Redis.Addr, s.Sentinel.Addr)
		for _, h := range []string{"sentinel-1:26379", "sentinel-2:26379", "sentinel-3:26379"} {
			hosts[h] = s.Sentinel.Addr
		}
	}
	s.closers = append(s.closers, func() { s.RDB.Close() })
	s.seedCSV = o.SeedCSV
	n, err := s.Seed(context.Background())
	if err != nil {
		return nil, fmt.Errorf("seeding ownership pairs: %w", err)
	}
	say("imported %d subscriptions from %s through pkg/ownership", n, o.SeedCSV)

	if s.Identity, err = demosvc.NewIdentity(); err != nil {
		return nil, err
	}
	// Identity events on the same Redis, as the docker demo's identity service publishes them.
	if err = s.Identity.PublishEvents(s.RDB); err != nil {
		return nil, err
	}
	wrap := o.Wrap
	if wrap == nil {
		wrap = func(_ string, h http.Handler) http.Handler { return h }
	}
	if s.IdentityURL, err = s.serve("identity", o.IdentityAddr, wrap("identity", s.Identity.Handler()), say); err != nil {
		return nil, err
	}
	if s.Payment, err = demosvc.NewPayment(s.RDB); err != nil {
		return nil, err
	}
	if s.PaymentURL, err = s.serve("payment", o.PaymentAddr, wrap("payment", s.Payment.Handler()), say); err != nil {
		return nil, err
	}
	if s.EchoURL, err = s.serve("echo upstream", o.EchoAddr, wrap("echo upstream", demosvc.Echo()), say); err != nil {
		return nil, err
	}
	hosts["identity:8080"] = hostOf(s.IdentityURL)
	hosts["payment:8080"] = hostOf(s.PaymentURL)
	hosts["echo:8080"] = hostOf(s.EchoURL)

	yml, err := os.ReadFile(o.KongYML)
	if err != nil {
		return nil, err
	}
	s.FileLogPath = o.FileLog
	if s.FileLogPath == "" {
		dir, err := os.MkdirTemp("", "subgate-filelog-")
		if err != nil {
			return nil, err
		}
		s.closers = append(s.closers, func() { os.RemoveAll(dir) })
		s.FileLogPath = filepath.Join(dir, "file-log.json")
	}
	s.rewrite = func(yml []byte) ([]byte, error) { return RewriteKongYML(yml, hosts, rewrite, s.FileLogPath) }
	if yml, err = s.rewrite(yml); err != nil {
		return nil, err
	}
	pluginsEnv := o.PluginsEnv
	if pluginsEnv == "" {
		pluginsEnv = filepath.Join(filepath.Dir(o.KongYML), "plugins.env")
	}
	if o.Kong == "" {
		say("gateway: the stand-in for Kong (spec/gateway), serving %s", o.KongYML)
	} else {
		say("gateway: Kong from %s (worker_processes %d), serving %s", o.Kong, max(o.Workers, 1), o.KongYML)
	}
	fixed := func(addr string) string { // "": Kong's own free port
		if strings.HasSuffix(addr, ":0") {
			return ""
		}
		return addr
	}
	if s.Edge, err = StartEdge(EdgeOptions{BinDir: o.BinDir, PluginsEnv: pluginsEnv, KongYML: yml, Kong: o.Kong, Workers: o.Workers,
		MainEnv: o.MainEnv, LogLevel: o.LogLevel, Output: o.PluginOutput, KongProxy: fixed(o.GatewayAddr), KongAdmin: fixed(o.AdminAddr), KongSettings: o.KongSettings}); err != nil {
		return nil, err
	}
	s.closers = append(s.closers, s.Edge.Close)
	var names []string
	for name, info := range s.Infos {
		names = append(names, fmt.Sprintf("%s (priority %d)", name, info.Priority))
	}
	sort.Strings(names)
	say("plugin servers: %v, started outside Kong by the supervisor (pkg/supervise), sockets under %s", names, s.Deployment.SocketDir)
	if s.Real() {
		s.GatewayURL, s.AdminURL = s.Edge.URL, s.Edge.AdminURL
		say("gateway on %s, Kong's Admin API on %s (error log: %s)", s.GatewayURL, s.AdminURL, s.Kong.ErrorLogPath())
		return s, nil
	}
	if s.GatewayURL, err = s.serve("gateway", o.GatewayAddr, s.Gateway, say); err != nil {
		return nil, err
	}
	if o.AdminAddr != "" {
		if s.AdminURL, err = s.serve("admin API", o.AdminAddr, s.Gateway.Admin(), say); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// RewriteKongYML makes a kong.yml written for the compose network (as the
// shipped one) this stack's: its hosts, Redis and file-log path.
func (s *Stack) RewriteKongYML(yml []byte) ([]byte, error) { return s.rewrite(yml) }

// Reload replaces the gateway's configuration with yml (a kong.yml written
// for the compose network, as the shipped one), as a DB-less Kong's
// POST /config does: the stand-in's Gateway.Reload, or a real Kong's Admin
// API.
func (s *Stack) Reload(yml []byte) error {
	yml, err := s.RewriteKongYML(yml)
	if err != nil {
		return err
	}
	if !s.Real() {
		return s.Gateway.Reload(yml)
	}
	return s.Kong.PostConfig(yml)
}

func (s *Stack) serve(what, addr string, h http.Handler, say func(string, ...any)) (string, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("%s: cannot listen on %s (is the port taken?): %w", what, addr, err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(l) }()
	s.closers = append(s.closers, func() { _ = srv.Close() })
	url := "http://" + l.Addr().String()
	say("%s on %s", what, url)
	return url, nil
}

func hostOf(u string) string { return u[len("http://"):] }

// Seed imports the demo's ownership pairs and returns how many; a rejected
// line is an error (the file is ours).
func (s *Stack) Seed(ctx context.Context) (int, error) {
	f, err := os.Open(s.seedCSV)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rep, err := ownership.NewStore(s.RDB, "").Import(ctx, f)
	if err == nil && len(rep.Rejected) > 0 {
		err = fmt.Errorf("%s: line %d: %s", s.seedCSV, rep.Rejected[0].Line, rep.Rejected[0].Reason)
	}
	return rep.Written, err
}

// Close stops everything, last started first.
func (s *Stack) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}
