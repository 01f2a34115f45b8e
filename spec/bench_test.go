package spec

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/subgate/subgate/spec/stack"
)

// BenchmarkChain measures a request through the local gateway: each
// route's plugins run as real plugin-server processes, every PDK call a
// round trip over the unix socket as Kong drives them, then the proxy to
// the echo upstream. "no-plugin" is the gateway and proxy alone, the
// baseline to subtract. Compare with the per-plugin benchmarks in pkg/ to
// see what the protocol costs.
func BenchmarkChain(b *testing.B) {
	bin := os.Getenv("SUBGATE_BIN")
	if bin == "" {
		b.Skip("set SUBGATE_BIN (make bench sets it after make build)")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		b.Skip("redis-server not installed")
	}
	st, err := stack.Start(stack.Options{BinDir: bin, KongYML: "../kong/kong.yml", SeedCSV: "../" + stack.SeedCSV})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	jwt, _ := st.Identity.Token(stack.Alice, "DE", time.Hour, nil)
	pay, _ := st.Payment.Token(stack.Alice, []string{"coach"}, false)
	h := http.Header{"Authorization": {"Bearer " + jwt}, "X-Payment-Token": {pay.Token}}
	for _, route := range []struct{ name, path string }{
		{"no-plugin", "/public/x"},
		{"jwt-claims", "/me"},
		{"jwt-claims+subscription-owner", "/subscriptions/1234"},
		{"jwt-claims+payment-token", "/training/plan"},
		{"user-context", "/account"},
		{"all-four", "/coach/subscriptions/1234"},
	} {
		b.Run(route.name, func(b *testing.B) {
			deadline := time.Now().Add(5 * time.Second)
			for { // the payment follower syncs in the background first
				w := httptest.NewRecorder()
				r := httptest.NewRequest("GET", route.path, nil)
				r.Header = h.Clone()
				st.Gateway.ServeHTTP(w, r)
				if w.Code == 200 {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("%s: %d %s", route.path, w.Code, w.Body)
				}
				time.Sleep(20 * time.Millisecond)
			}
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				r := httptest.NewRequest("GET", route.path, nil)
				r.Header = h.Clone()
				st.Gateway.ServeHTTP(w, r)
				if w.Code != 200 {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}

// BenchmarkShapes compares the two shapes of the same authorization on
// the coaching route (ownership, payment token, identity): the four-plugin
// chain, subgate (the same checks in one plugin and one event), and a
// floor, a test plugin (testdata/floor) making subgate's PDK calls, Redis
// HGET and identity GET while deciding nothing, at concurrency 1, 8 and
// 32. Each reports p50 and p99 latency and requests per second.
func BenchmarkShapes(b *testing.B) {
	bin := os.Getenv("SUBGATE_BIN")
	if bin == "" {
		b.Skip("set SUBGATE_BIN (make bench sets it after make build)")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		b.Skip("redis-server not installed")
	}
	dir := b.TempDir()
	for _, p := range []string{"jwt-claims", "subscription-owner", "payment-token", "user-context", "subgate"} {
		abs, err := filepath.Abs(filepath.Join(bin, p))
		if err == nil {
			err = os.Symlink(abs, filepath.Join(dir, p))
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "floor"), "./testdata/floor").CombinedOutput(); err != nil {
		b.Fatalf("building the floor plugin: %v\n%s", err, out)
	}
	yml, err := os.ReadFile("../kong/kong.yml")
	if err != nil {
		b.Fatal(err)
	}
	yml = append(yml, []byte(`
      - name: floor
        paths: [/floor]
        strip_path: false
        plugins:
          - name: floor
            config:
              redis: *redis
              identity_url: http://identity:8080/context
`)...)
	kongYML := filepath.Join(b.TempDir(), "kong.yml") // not among the plugin binaries
	if err := os.WriteFile(kongYML, yml, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := stack.WithPluginServers("../kong/plugins.env", filepath.Join(filepath.Dir(kongYML), "plugins.env"), "floor"); err != nil {
		b.Fatal(err)
	}
	st, err := stack.Start(stack.Options{BinDir: dir, KongYML: kongYML, SeedCSV: "../" + stack.SeedCSV})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	jwt, _ := st.Identity.Token(stack.Alice, "DE", time.Hour, nil)
	pay, _ := st.Payment.Token(stack.Alice, []string{"coach"}, false)
	h := http.Header{"Authorization": {"Bearer " + jwt}, "X-Payment-Token": {pay.Token}}
	// The attack case: a flood of forged tokens, each a denial, for which
	// Kong abandons the plugin-server connection after the exit.
	forged := http.Header{"Authorization": {"Bearer " + jwt[:len(jwt)-4] + "AAAA"}, "X-Payment-Token": {pay.Token}}
	serveWith := func(hdr http.Header, path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", path, nil)
		r.Header = hdr.Clone()
		st.Gateway.ServeHTTP(w, r)
		return w
	}
	pids := map[string]int{}
	for name := range st.Infos {
		pids[name] = st.Pid(name)
	}
	for _, shape := range []struct {
		name, path string
		hdr        http.Header
		want       int
	}{
		{"chain", "/coach/subscriptions/1234", h, 200},
		{"subgate", "/sg/coach/subscriptions/1234", h, 200},
		{"floor", "/floor/subscriptions/1234", h, 200},
		{"chain-deny", "/coach/subscriptions/1234", forged, 401},
		{"subgate-deny", "/sg/coach/subscriptions/1234", forged, 401},
	} {
		serve := func(path string) *httptest.ResponseRecorder { return serveWith(shape.hdr, path) }
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			w := serve(shape.path) // the payment follower syncs in the background first
			if w.Code == shape.want {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s: %d %s", shape.path, w.Code, w.Body)
			}
		}
		for _, conc := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("%s/c=%d", shape.name, conc), func(b *testing.B) {
				lat := make([][]time.Duration, conc)
				var next atomic.Int64
				var failed atomic.Value
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for g := range conc {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for next.Add(1) <= int64(b.N) {
							t0 := time.Now()
							w := serve(shape.path)
							lat[g] = append(lat[g], time.Since(t0))
							if w.Code != shape.want {
								failed.Store(fmt.Sprintf("%d %s", w.Code, w.Body))
							}
						}
					}()
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				if f := failed.Load(); f != nil {
					b.Fatal(f)
				}
				var all []time.Duration
				for _, l := range lat {
					all = append(all, l...)
				}
				slices.Sort(all)
				pct := func(p float64) float64 {
					return float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds())
				}
				b.ReportMetric(pct(0.50), "p50-µs")
				b.ReportMetric(pct(0.99), "p99-µs")
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
			})
		}
	}
	// Stable under the flood: no plugin server died or restarted, and an
	// allow still passes through both shapes.
	for name := range st.Infos {
		if st.Pid(name) != pids[name] {
			b.Fatalf("plugin server %s restarted during the benchmark", name)
		}
	}
	for _, path := range []string{"/coach/subscriptions/1234", "/sg/coach/subscriptions/1234"} {
		if w := serveWith(h, path); w.Code != 200 {
			b.Fatalf("after the flood %s: %d %s", path, w.Code, w.Body)
		}
	}
}
