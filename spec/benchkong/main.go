// Command benchkong is `make bench-kong`: the coaching route's cost through
// a real Kong (spec/realkong), the plugin servers supervised as shipped
// (spec/stack), side by side in one run. Every shape is measured in every
// round, rounds interleaved, at each concurrency and with worker_processes
// 1 and 2 (two Kongs on the same plugin servers, one loaded at a time):
//
//	none             a route without plugins (Kong and the proxy alone)
//	empty            an empty Go plugin: one event, no PDK call (spec/testdata/empty)
//	floor            subgate's PDK calls and payloads, HGET and identity GET, deciding nothing (spec/testdata/floor)
//	chain            the four-plugin chain (/coach)
//	subgate          subgate (/sg/coach)
//	subgate-seq      subgate with identity_lookup: sequential
//	base             subgate built from another revision (-base), on its own route
//	chain-deny       a forged token on the chain (denied by jwt-claims)
//	subgate-deny     a forged token on subgate
//	subgate-foreign  another customer's subscription on subgate (denied by the ownership check)
//
// For each: p50, p99, requests per second, and CPU per request of Kong's
// workers and of each plugin server (utime+stime from /proc), and identity
// GETs per request; then ratios, each the median of the ratios taken
// within a round. Before measuring it holds the floor to subgate: the same
// PDK calls (through the stand-in, on the same plugin-server processes) and
// the same upstream headers, names and value sizes (through Kong).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/subgate/subgate/spec/realkong"
	"github.com/subgate/subgate/spec/stack"
)

func main() {
	o := options{}
	flag.StringVar(&o.bin, "bin", "bin", "the built plugin binaries (make build)")
	flag.StringVar(&o.repo, "repo", ".", "the repository root (kong/, docker/, spec/testdata)")
	flag.StringVar(&o.kong, "kong", realkong.Find(), "the Kong executable")
	flag.StringVar(&o.base, "base", "", "a git revision whose subgate is measured beside this one as shape \"base\" (\"\": none)")
	flag.IntVar(&o.rounds, "rounds", 3, "interleaved rounds (0: start everything, hold the floor to subgate, measure nothing)")
	flag.DurationVar(&o.duration, "duration", 2*time.Second, "measured time per shape, concurrency and worker count in a round")
	flag.DurationVar(&o.warmup, "warmup", 300*time.Millisecond, "unmeasured load before each measurement")
	flag.StringVar(&o.conc, "conc", "1,8,32", "concurrencies")
	flag.StringVar(&o.workers, "workers", "1,2", "Kong worker_processes values")
	flag.StringVar(&o.shapes, "shapes", "none,empty,floor,chain,subgate,subgate-seq,base,chain-deny,subgate-deny,subgate-foreign", "shapes to measure")
	flag.StringVar(&o.pprof, "pprof", "", "serve subgate's pprof on this loopback address (subgate built with net/http/pprof; its figures then include that)")
	flag.StringVar(&o.raw, "raw", "", "also write every measurement as tab-separated lines to this file")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-kong:", err)
		os.Exit(1)
	}
}

type options struct {
	bin, repo, kong, base, conc, workers, shapes, pprof, raw string
	rounds                                                   int
	duration, warmup                                         time.Duration
}

// The routes added to the shipped kong.yml: each path as long as subgate's
// (/sg/coach/subscriptions/1234), so Kong's work on the path is the same.
const extraRoutes = `
      - name: bench-empty
        paths: [/em/coach]
        strip_path: false
        plugins:
          - name: empty
      - name: bench-floor
        paths: [/fl/coach]
        strip_path: false
        plugins:
          - name: floor
            config:
              redis: *redis
              identity_url: http://identity:8080/context
              context_header: X-User-Context
              upstream: {X-Customer-Id: "%[1]s", X-Country: "DE", X-User-Context-Source: identity, X-User-Id: "%[1]s", X-User-Country: "DE"}
              remove: [X-Payment-Token]
      - name: bench-sequential
        paths: [/sq/coach]
        strip_path: false
        plugins:
          - name: subgate
            config:
              identity_lookup: sequential
              jwt: *jwt
              ownership:
                redis: *redis
                path_patterns:
                  - /sq/coach/subscriptions/{subscription_id}
              payment: *payment
              identity: *identity
`

const baseRoute = `
      - name: bench-base
        paths: [/sb/coach]
        strip_path: false
        plugins:
          - name: subgate-base
            config:
              jwt: *jwt
              ownership:
                redis: *redis
                path_patterns:
                  - /sb/coach/subscriptions/{subscription_id}
              payment: *payment
              identity: *identity
`

func run(o options) error {
	if o.kong == "" {
		return errors.New(realkong.Hint)
	}
	repo, err := filepath.Abs(o.repo)
	if err != nil {
		return err
	}
	concs, err := ints(o.conc)
	if err != nil {
		return err
	}
	workers, err := ints(o.workers)
	if err != nil {
		return err
	}
	wanted := strings.Split(o.shapes, ",")
	if o.base == "" {
		wanted = slices.DeleteFunc(wanted, func(s string) bool { return s == "base" })
	}
	dir, err := os.MkdirTemp("", "bench-kong-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := binDir(o, repo, dir)
	if err != nil {
		return err
	}
	yml, err := os.ReadFile(filepath.Join(repo, "kong", "kong.yml"))
	if err != nil {
		return err
	}
	yml = append(yml, fmt.Sprintf(extraRoutes, stack.Alice)...)
	servers := []string{"floor", "empty"}
	if o.base != "" {
		yml = append(yml, baseRoute...)
		servers = append(servers, "subgate-base")
	}
	kongYML := filepath.Join(dir, "kong.yml")
	if err := os.WriteFile(kongYML, yml, 0o600); err != nil {
		return err
	}
	pluginsEnv := filepath.Join(dir, "plugins.env")
	if err := stack.WithPluginServers(filepath.Join(repo, "kong", "plugins.env"), pluginsEnv, servers...); err != nil {
		return err
	}
	var mainEnv []string
	if o.pprof != "" {
		mainEnv = []string{"SUBGATE_PPROF_ADDR=" + o.pprof}
	}
	say("starting Redis, the demo services, the plugin servers and Kong (worker_processes %d)", workers[0])
	st, err := stack.Start(stack.Options{BinDir: bin, KongYML: kongYML, PluginsEnv: pluginsEnv, SeedCSV: filepath.Join(repo, stack.SeedCSV),
		Kong: o.kong, Workers: workers[0], MainEnv: mainEnv})
	if err != nil {
		return err
	}
	defer st.Close()
	kongs := map[int]*realkong.Kong{workers[0]: st.Kong}
	rewritten, err := st.RewriteKongYML(yml)
	if err != nil {
		return err
	}
	for _, w := range workers[1:] {
		say("starting a second Kong (worker_processes %d) on the same plugin servers", w)
		k, err := realkong.Start(realkong.Options{Exe: o.kong, Env: st.Deployment.Env, DeclarativeConfig: rewritten, Workers: w})
		if err != nil {
			return err
		}
		defer func() { _ = k.Stop() }()
		kongs[w] = k
	}

	jwt, err := st.Identity.Token(stack.Alice, "DE", 24*time.Hour, nil)
	if err != nil {
		return err
	}
	pay, err := st.Payment.Token(stack.Alice, []string{"coach"}, false)
	if err != nil {
		return err
	}
	allow := http.Header{"Authorization": {"Bearer " + jwt}, "X-Payment-Token": {pay.Token}}
	forged := http.Header{"Authorization": {"Bearer " + jwt[:len(jwt)-4] + "AAAA"}, "X-Payment-Token": {pay.Token}}
	chainServers := []string{"jwt-claims", "subscription-owner", "payment-token", "user-context"}
	all := []shape{
		{"none", "/public/coach/subscriptions/1234", allow, 200, nil},
		{"empty", "/em/coach/subscriptions/1234", allow, 200, []string{"empty"}},
		{"floor", "/fl/coach/subscriptions/1234", allow, 200, []string{"floor"}},
		{"chain", "/coach/subscriptions/1234", allow, 200, chainServers},
		{"subgate", "/sg/coach/subscriptions/1234", allow, 200, []string{"subgate"}},
		{"subgate-seq", "/sq/coach/subscriptions/1234", allow, 200, []string{"subgate"}},
		{"base", "/sb/coach/subscriptions/1234", allow, 200, []string{"subgate-base"}},
		{"chain-deny", "/coach/subscriptions/1234", forged, 401, chainServers},
		{"subgate-deny", "/sg/coach/subscriptions/1234", forged, 401, []string{"subgate"}},
		{"subgate-foreign", "/sg/coach/subscriptions/5678", allow, 403, []string{"subgate"}},
	}
	var shapes []shape
	for _, name := range wanted {
		i := slices.IndexFunc(all, func(s shape) bool { return s.name == strings.TrimSpace(name) })
		if i < 0 {
			return fmt.Errorf("unknown shape %q", name)
		}
		shapes = append(shapes, all[i])
	}
	for _, w := range workers {
		for _, s := range shapes {
			if err := waitAnswer(kongs[w].ProxyURL, s); err != nil {
				return fmt.Errorf("worker_processes %d: %w", w, err)
			}
		}
	}
	if err := floorMatchesSubgate(st, rewritten, allow); err != nil {
		return err
	}
	if o.rounds == 0 {
		return nil
	}

	b := &bench{st: st, kongs: kongs, o: o}
	b.measureIdle()
	start := time.Now()
	for r := range o.rounds {
		for _, w := range workers {
			for _, c := range concs {
				// Each round starts the shapes at another place, so no
				// shape always follows the same one.
				for i := range shapes {
					s := shapes[(i+r)%len(shapes)]
					m, err := b.measure(w, c, s)
					if err != nil {
						return fmt.Errorf("round %d, worker_processes %d, c=%d, %s: %w", r+1, w, c, s.name, err)
					}
					m.round = r
					b.results = append(b.results, m)
				}
			}
		}
		say("round %d of %d done (%v)", r+1, o.rounds, time.Since(start).Round(time.Second))
	}
	for name := range st.Infos {
		if st.Pid(name) != b.pids(name) {
			return fmt.Errorf("plugin server %s restarted during the run", name)
		}
	}
	if o.raw != "" {
		if err := b.writeRaw(o.raw); err != nil {
			return err
		}
	}
	b.report(os.Stdout, shapes, workers, concs)
	return nil
}

// binDir is a directory with every plugin binary Kong's plugins.env names:
// the built ones (links), the test plugins, and subgate-base when asked.
func binDir(o options, repo, dir string) (string, error) {
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		return "", err
	}
	built, err := filepath.Abs(o.bin)
	if err != nil {
		return "", err
	}
	entries, err := os.ReadDir(built)
	if err != nil {
		return "", fmt.Errorf("%s: %w (run make build)", built, err)
	}
	for _, e := range entries {
		if err := os.Symlink(filepath.Join(built, e.Name()), filepath.Join(bin, e.Name())); err != nil {
			return "", err
		}
	}
	build := func(src, pkg, out string) error {
		say("building %s", out)
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(bin, out), pkg)
		cmd.Dir = src
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building %s: %v\n%s", out, err, b)
		}
		return nil
	}
	for _, p := range []string{"floor", "empty"} {
		if err := build(repo, "./spec/testdata/"+p, p); err != nil {
			return "", err
		}
	}
	if o.pprof != "" {
		_ = os.Remove(filepath.Join(bin, "subgate"))
		if err := build(repo, "./spec/benchkong/pprof", "subgate"); err != nil {
			return "", err
		}
	}
	if o.base != "" {
		src := filepath.Join(dir, "base")
		if err := os.Mkdir(src, 0o755); err != nil {
			return "", err
		}
		archive := exec.Command("sh", "-c", "git -C \"$1\" archive \"$2\" | tar -x -C \"$3\"", "sh", repo, o.base, src)
		if b, err := archive.CombinedOutput(); err != nil {
			return "", fmt.Errorf("git archive %s: %v\n%s", o.base, err, b)
		}
		if err := build(src, "./plugins/subgate", "subgate-base"); err != nil {
			return "", err
		}
	}
	return bin, nil
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q: not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func say(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench-kong: "+format+"\n", a...)
}

// waitAnswer waits until the shape answers its status (the payment
// follower syncs in the background first, and Kong starts instances on
// the first request).
func waitAnswer(base string, s shape) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		status, body, err := get(http.DefaultClient, base, s.path, s.hdr)
		if err == nil && status == s.want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (%s) answered %d %s %v, want %d", s.name, s.path, status, body, err, s.want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func get(c *http.Client, base, path string, h http.Header) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header = h
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}
