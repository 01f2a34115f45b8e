package spec

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/ownership"
	"github.com/subgate/subgate/pkg/payevents"
	"github.com/subgate/subgate/pkg/redistest"
	"github.com/subgate/subgate/spec/kongsim"
	"github.com/subgate/subgate/spec/stack"
)

// Soak bounds, checked between the first period (steady load, no fault)
// and the last (steady load after every fault has healed). Connection
// pools may legitimately stay larger after a fault (the retries of an
// outage raise concurrency, and idle connections are kept: Kong's pool of
// plugin-server connections, go-redis's pool_size 32, the identity client's
// keep-alive), which the 10-minute soak measured at up to +27 fds and +21
// goroutines. A leak of one per request (thousands a minute at the soak's
// rate) or of a handful per fault crosses these.
const (
	soakGoroutineSlack = 40       // goroutines per plugin server
	soakFDSlack        = 40       // open file descriptors per plugin server
	soakRSSSlack       = 40 << 20 // bytes of resident memory per plugin server
)

// The plugin servers of each shape: the chain's four, and subgate.
var soakShapes = map[string][]string{
	"chain":   {"jwt-claims", "subscription-owner", "payment-token", "user-context"},
	"subgate": {"subgate"},
}

// soakStack starts the stack with every plugin server serving its metrics
// on a loopback port, and the identity and payment services' JWKS behind a
// switch that makes them unreachable (the connection is closed unanswered).
func soakStack(tb testing.TB, bin string, cluster bool) (*stack.Stack, map[string]string, *jwksSwitch) {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("SUBGATE_REQUIRE_REDIS") == "1" {
			tb.Fatal("redis-server not installed and SUBGATE_REQUIRE_REDIS=1")
		}
		tb.Skip("redis-server not installed")
	}
	jwksDown := &jwksSwitch{}
	st, err := stack.Start(stack.Options{BinDir: bin, KongYML: "../kong/kong.yml", SeedCSV: "../" + stack.SeedCSV, Cluster: cluster,
		Wrap: func(service string, h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if jwksDown.down.Load() && strings.HasSuffix(r.URL.Path, "/jwks.json") {
					jwksDown.refused.Add(1)
					if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
						c.Close()
						return
					}
				}
				h.ServeHTTP(w, r)
			})
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(st.Close)
	// kong/plugins.env starts every server with -metrics-addr; the stack
	// moved each to a free loopback port.
	return st, st.Deployment.Metrics, jwksDown
}

// jwksSwitch makes the JWKS endpoints unreachable and counts the fetches
// it refused.
type jwksSwitch struct {
	down    atomic.Bool
	refused atomic.Int64
}

// soakKind is one kind of request in the load: allow kinds must answer 200
// (or 503 while a fault lasts: fail closed); deny kinds must never be 200.
type soakKind struct {
	name, shape, path string
	hdr               http.Header
	allow             bool
}

func soakKinds(tb testing.TB, st *stack.Stack) []soakKind {
	tb.Helper()
	aliceJWT, err := st.Identity.Token(stack.Alice, "DE", 24*time.Hour, nil)
	if err != nil {
		tb.Fatal(err)
	}
	bobJWT, _ := st.Identity.Token(stack.Bob, "DE", 24*time.Hour, nil)
	alicePay, err := st.Payment.Token(stack.Alice, []string{"coach"}, false)
	if err != nil {
		tb.Fatal(err)
	}
	bobPay, _ := st.Payment.Token(stack.Bob, []string{"coach"}, false)
	// Bob's subscription is cancelled: his token (issued this second or
	// before) is revoked from now on.
	if _, err := st.Payment.Publish(context.Background(), payevents.Cancellation, stack.Bob); err != nil {
		tb.Fatal(err)
	}
	parts := strings.SplitN(aliceJWT, ".", 3)
	unknownKid := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","kid":"soak-unknown","typ":"JWT"}`)) +
		"." + parts[1] + "." + parts[2]
	hdr := func(jwt, pay string) http.Header {
		return http.Header{"Authorization": {"Bearer " + jwt}, "X-Payment-Token": {pay}}
	}
	var kinds []soakKind
	for shape, prefix := range map[string]string{"chain": "", "subgate": "/sg"} {
		allow := soakKind{"allow", shape, prefix + "/coach/subscriptions/1234", hdr(aliceJWT, alicePay.Token), true}
		kinds = append(kinds, allow, allow, allow, allow,
			soakKind{"foreign-subscription", shape, prefix + "/coach/subscriptions/5678", hdr(aliceJWT, alicePay.Token), false},
			soakKind{"revoked-payment-token", shape, prefix + "/coach/subscriptions/5678", hdr(bobJWT, bobPay.Token), false},
			soakKind{"forged-token", shape, prefix + "/coach/subscriptions/1234", hdr(aliceJWT[:len(aliceJWT)-4]+"AAAA", alicePay.Token), false},
			soakKind{"unknown-kid", shape, prefix + "/coach/subscriptions/1234", hdr(unknownKid, alicePay.Token), false})
	}
	// Before the load: every kind answers as it must (the payment follower
	// syncs in the background first).
	for _, k := range kinds {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			code := serveOnce(st, k)
			if (k.allow && code == 200) || (!k.allow && code >= 400 && code < 500) {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("%s %s %s: %d before the soak", k.shape, k.name, k.path, code)
			}
		}
	}
	return kinds
}

func serveOnce(st *stack.Stack, k soakKind) int {
	status, _ := serveCode(st, k)
	return status
}

// serveCode answers the status and, on a denial, its code.
func serveCode(st *stack.Stack, k soakKind) (int, string) {
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", k.path, nil)
	r.Header = k.hdr.Clone()
	st.Gateway.ServeHTTP(w, r)
	var body struct{ Code string }
	if w.Code != 200 {
		_ = json.Unmarshal(w.Body.Bytes(), &body)
	}
	return w.Code, body.Code
}

// soakSample is what one plugin server's /metrics says.
type soakSample struct {
	pid                       int
	rss, goroutines, fds      float64
	cpu                       float64 // seconds
	decisions, errors         float64 // errors: denials with a 5xx code
	identityCache, redisConn  float64
	streamState               float64 // revoked customers and evicted users the followers hold
	redisStale, redisTimeouts float64 // go-redis pool: dead connections found, waits for a connection timed out
}

func scrape(addr string) (soakSample, error) {
	var s soakSample
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		name, labels, _ := strings.Cut(line[:sp], "{")
		switch name {
		case "process_resident_memory_bytes":
			s.rss = v
		case "go_goroutines":
			s.goroutines = v
		case "process_open_fds":
			s.fds = v
		case "process_cpu_seconds_total":
			s.cpu = v
		case "subgate_identity_cache_entries":
			s.identityCache += v
		case "subgate_stream_state_entries":
			s.streamState += v
		case "subgate_redis_pool_connections":
			s.redisConn += v
		case "subgate_redis_pool_stale_connections_total":
			s.redisStale += v
		case "subgate_redis_pool_timeouts_total":
			s.redisTimeouts += v
		case "subgate_decisions_total":
			s.decisions += v
			if _, rest, ok := strings.Cut(labels, `code="`); ok {
				code, _, _ := strings.Cut(rest, `"`)
				if code != "" && denial.New(denial.Code(code), "").Status >= 500 {
					s.errors += v
				}
			}
		}
	}
	return s, sc.Err()
}

func scrapeAll(tb testing.TB, st *stack.Stack, addrs map[string]string) map[string]soakSample {
	tb.Helper()
	out := map[string]soakSample{}
	for name, addr := range addrs {
		s, err := scrape(addr)
		if err != nil {
			tb.Fatalf("metrics of %s: %v", name, err)
		}
		s.pid = st.Pid(name)
		out[name] = s
	}
	return out
}

// TestSoak runs the four-plugin chain and subgate side by side at a steady
// rate through the stand-in (real binaries, real redis-server behind
// Sentinel, the demo identity and payment services) for SOAK (default 60s,
// the CI mode; `make soak` sets 10m). The run is cut into periods (a minute,
// or a seventh of a shorter run): the first and the last are fault-free,
// every other one starts with a fault, in turn: Redis killed and restarted
// (from its snapshot, as with persistence on), identity answering 503, the
// JWKS endpoints unreachable, a burst of payment events, config reloads.
// After each period it prints, per plugin server, RSS, goroutines, open
// fds, cache entries, decisions/s, 5xx denials/s and CPU per request.
// SOAK_CLUSTER=1 runs it on a 3+3 Redis Cluster: the Redis fault then kills
// the primary of the allowed requests' bucket (its replica takes over) and
// rejoins it.
// It fails on any false allow (a deny kind answered 200), on an allow kind
// answered anything but 200 or 503, on a plugin server that died, and on
// growth between the first period and the last beyond the soak* bounds.
func TestSoak(t *testing.T) {
	dur := 60 * time.Second
	if v := os.Getenv("SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 7*time.Second {
			t.Fatalf("SOAK=%q: want a duration of 7s or more", v)
		}
		dur = d
	}
	rate := 100 // requests per second, both shapes together
	if v := os.Getenv("SOAK_RATE"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			rate = n
		}
	}
	period := time.Minute
	if dur < 7*time.Minute {
		period = dur / 7
	}
	periods := int(dur / period)
	faultFor := min(period/3, 20*time.Second)

	cluster := os.Getenv("SOAK_CLUSTER") == "1"
	st, addrs, jwksDown := soakStack(t, binaries(t), cluster)
	kinds := soakKinds(t, st)
	yml, err := os.ReadFile("../kong/kong.yml")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	var killed *redistest.Server // the cluster node the Redis fault killed
	var faultStart time.Time
	redisFault := "redis killed (SIGKILL) and restarted"
	if cluster {
		redisFault = "the primary of DE 1234 killed (SIGKILL), then rejoined as a replica"
	}
	faults := []struct {
		name        string
		apply, heal func()
	}{
		{redisFault, func() {
			if cluster { // the primary of alice's bucket: its replica takes over
				p, err := st.Cluster.PrimaryFor(ownership.Layout{Prefix: ownership.DefaultPrefix}.Key("DE", 1234))
				if err != nil {
					t.Errorf("primary of DE 1234: %v", err)
					return
				}
				// Persistence on, as in production: a primary that comes back
				// empty before its replica is promoted wipes the replica too.
				node := redis.NewClient(&redis.Options{Addr: p.Addr})
				if err := node.Save(ctx).Err(); err != nil {
					t.Errorf("SAVE on %s: %v", p.Addr, err)
				}
				node.Close()
				killed = p
				st.Cluster.Kill(p)
				return
			}
			if err := st.RDB.Save(ctx).Err(); err != nil { // the snapshot persistence would have
				t.Errorf("SAVE: %v", err)
			}
			st.Redis.Stop()
		}, func() {
			if cluster { // it rejoins as its successor's replica, once there is one
				key := ownership.Layout{Prefix: ownership.DefaultPrefix}.Key("DE", 1234)
				for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
					if q, err := st.Cluster.PrimaryFor(key); err == nil && q != killed {
						t.Logf("  a replica serves DE 1234 (seen %s after the kill)", time.Since(faultStart).Round(100*time.Millisecond))
						break
					}
				}
				if killed != nil {
					if err := st.Cluster.Rejoin(killed); err != nil {
						t.Errorf("rejoin: %v", err)
					}
				}
				return
			}
			st.Redis.Restart(t)
		}},
		{"identity answers 503", func() { st.Identity.SetMode("503") }, func() { st.Identity.SetMode("ok") }},
		{"JWKS endpoints unreachable", func() { jwksDown.down.Store(true) }, func() {
			jwksDown.down.Store(false)
			t.Logf("JWKS fetches refused so far: %d", jwksDown.refused.Load())
		}},
		{"payment-event burst (5,000 events)", func() {
			for i := range 5000 {
				if _, err := st.Payment.Publish(ctx, payevents.Refund, fmt.Sprintf("soak-burst-%d-%d", time.Now().UnixNano(), i)); err != nil {
					t.Errorf("publishing: %v", err)
					return
				}
			}
		}, func() {}},
		{"config reload x3 (new instances)", func() {
			for range 3 {
				if err := st.Reload(yml); err != nil {
					t.Errorf("reload: %v", err)
				}
				time.Sleep(faultFor / 4)
			}
		}, func() {}},
	}

	// The load: one request per tick, kinds in turn; a tick that finds every
	// worker busy is counted as skipped (the rate was not held).
	type counts struct {
		requests, ok, unavailable, falseAllow, falseDeny int
		codes                                            map[string]int // of the 503s
	}
	newCounts := func() map[string]*counts {
		return map[string]*counts{"chain": {codes: map[string]int{}}, "subgate": {codes: map[string]int{}}}
	}
	var mu sync.Mutex
	cur := newCounts()
	var firstBad []string
	var skipped atomic.Int64
	var lastUnavailable atomic.Int64 // when a request last answered 503
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		sem := make(chan struct{}, 64)
		var wg sync.WaitGroup
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				wg.Wait()
				return
			case <-tick.C:
			}
			k := kinds[i%len(kinds)]
			select {
			case sem <- struct{}{}:
			default:
				skipped.Add(1)
				continue
			}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				code, denialCode := serveCode(st, k)
				mu.Lock()
				defer mu.Unlock()
				c := cur[k.shape]
				c.requests++
				bad := ""
				switch {
				case code == 200 && !k.allow:
					c.falseAllow++
					bad = "FALSE ALLOW"
				case code == 200:
					c.ok++
				case code == 503:
					c.unavailable++
					c.codes[denialCode]++
					lastUnavailable.Store(time.Now().UnixNano())
				case k.allow:
					c.falseDeny++
					bad = "false deny"
				}
				if bad != "" && len(firstBad) < 10 {
					firstBad = append(firstBad, fmt.Sprintf("%s: %s %s %s answered %d", bad, k.shape, k.name, k.path, code))
				}
			}()
		}
	}()
	defer func() {
		select {
		case <-loadDone:
		default:
			close(stop)
			<-loadDone
		}
	}()

	names := slices.Sorted(func(yield func(string) bool) {
		for n := range addrs {
			if !yield(n) {
				return
			}
		}
	})
	t.Logf("soak: %s in %d periods of %s, %d requests/s (chain and subgate alternating; 8 of 16 requests must be allowed), faults last %s",
		dur, periods, period, rate, faultFor)
	begin := time.Now()
	prev := scrapeAll(t, st, addrs)
	logSeen := len(st.Log.Entries())
	firstWarn := map[string]string{} // what each source first logged at warn or above, by message shape
	var first, last map[string]soakSample
	total := newCounts()
	for p := range periods {
		end := begin.Add(time.Duration(p+1) * period)
		what := "no fault"
		var healed time.Time
		if p > 0 && p < periods-1 {
			f := faults[(p-1)%len(faults)]
			what = f.name
			t0 := time.Now()
			faultStart = t0
			f.apply()
			time.Sleep(time.Until(t0.Add(faultFor)))
			f.heal()
			healed = time.Now()
		}
		time.Sleep(time.Until(end))
		now := scrapeAll(t, st, addrs)
		mu.Lock()
		pc := cur
		cur = newCounts()
		mu.Unlock()
		t.Logf("period %d (%s, %s): skipped ticks so far %d", p+1, time.Since(begin).Round(time.Second), what, skipped.Load())
		if last := time.Unix(0, lastUnavailable.Load()); !healed.IsZero() && last.After(faultStart) {
			// With a cluster, the last 503 is when the replica took over.
			after := "before it was healed"
			if last.After(healed) {
				after = last.Sub(healed).Round(time.Millisecond).String() + " after it was healed"
			}
			t.Logf("  the last 503 came %s after the fault began, %s", last.Sub(faultStart).Round(time.Millisecond), after)
		}
		for _, shape := range []string{"chain", "subgate"} {
			c := pc[shape]
			var cpu float64
			for _, n := range soakShapes[shape] {
				cpu += now[n].cpu - prev[n].cpu
			}
			t.Logf("  %-7s %5d requests: %d 200, %d 503 %v, %d false allows, %d false denies; plugin-server CPU %.2f ms per request",
				shape, c.requests, c.ok, c.unavailable, c.codes, c.falseAllow, c.falseDeny, 1000*cpu/float64(max(1, c.requests)))
			tc := total[shape]
			tc.requests += c.requests
			tc.ok += c.ok
			tc.unavailable += c.unavailable
			for code, n := range c.codes {
				tc.codes[code] += n
			}
			tc.falseAllow += c.falseAllow
			tc.falseDeny += c.falseDeny
		}
		// Errors an operator sees: Kong error-log lines at warn or above.
		entries := st.Log.Entries()
		warns := map[string]int{}
		for _, e := range entries[logSeen:] {
			if e.Level <= kongsim.LogWarn {
				warns[e.Source]++
				shape := e.Source + " " + strings.Map(func(r rune) rune {
					if r >= '0' && r <= '9' {
						return -1
					}
					return r
				}, e.Text[:min(len(e.Text), 120)])
				if _, ok := firstWarn[shape]; !ok && len(firstWarn) < 20 {
					firstWarn[shape] = fmt.Sprintf("period %d, %s: %s", p+1, e.Source, e.Text[:min(len(e.Text), 300)])
				}
			}
		}
		logSeen = len(entries)
		for _, n := range names {
			s, q := now[n], prev[n]
			restarted := ""
			if s.pid != q.pid {
				restarted = " RESTARTED"
			}
			t.Logf("  %-18s pid %d%s: RSS %5.1f MB, goroutines %3.0f, fds %3.0f, identity cache %3.0f, stream state %4.0f, redis conns %2.0f (stale %.0f, pool timeouts %.0f), decisions %6.1f/s, 5xx denials %5.1f/s, error-log warn+ lines %d",
				n, s.pid, restarted, s.rss/(1<<20), s.goroutines, s.fds, s.identityCache, s.streamState, s.redisConn, s.redisStale, s.redisTimeouts,
				(s.decisions-q.decisions)/period.Seconds(), (s.errors-q.errors)/period.Seconds(), warns[n])
		}
		if p == 0 {
			first = now
		}
		last, prev = now, now
	}
	close(stop)
	<-loadDone

	for _, shape := range []string{"chain", "subgate"} {
		c := total[shape]
		t.Logf("total %s: %d requests, %d 200, %d 503 %v, %d false allows, %d false denies", shape, c.requests, c.ok, c.unavailable, c.codes, c.falseAllow, c.falseDeny)
		if c.falseAllow > 0 {
			t.Errorf("%s: %d false allows", shape, c.falseAllow)
		}
		if c.falseDeny > 0 {
			t.Errorf("%s: %d allow requests answered neither 200 nor 503", shape, c.falseDeny)
		}
		if c.ok == 0 {
			t.Errorf("%s: nothing was allowed", shape)
		}
	}
	for _, b := range firstBad {
		t.Log(b)
	}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range firstWarn {
			if !yield(k) {
				return
			}
		}
	}) {
		t.Logf("error log: %s", firstWarn[k])
	}
	for _, n := range names {
		a, z := first[n], last[n]
		if a.pid != z.pid {
			t.Errorf("%s: plugin server restarted during the soak (pid %d, then %d)", n, a.pid, z.pid)
			continue
		}
		if z.goroutines > a.goroutines+soakGoroutineSlack {
			t.Errorf("%s: goroutines %v after the faults, %v before (bound +%d)", n, z.goroutines, a.goroutines, soakGoroutineSlack)
		}
		if z.fds > a.fds+soakFDSlack {
			t.Errorf("%s: open fds %v after the faults, %v before (bound +%d)", n, z.fds, a.fds, soakFDSlack)
		}
		if z.rss > a.rss+soakRSSSlack {
			t.Errorf("%s: RSS %.1f MB after the faults, %.1f MB before (bound +%d MB)", n, z.rss/(1<<20), a.rss/(1<<20), soakRSSSlack>>20)
		}
	}
}

// BenchmarkPluginCPU measures the plugin servers' CPU per allowed request
// on the coaching route, the chain's four servers summed against subgate's
// one (process_cpu_seconds_total from their metrics, so the stand-in's own
// CPU is not counted), at concurrency 8. cpu-ms/req is also the number of
// cores the plugin servers need per 1,000 requests/s.
func BenchmarkPluginCPU(b *testing.B) {
	bin := os.Getenv("SUBGATE_BIN")
	if bin == "" {
		b.Skip("set SUBGATE_BIN (make bench sets it after make build)")
	}
	st, addrs, _ := soakStack(b, bin, false)
	kinds := soakKinds(b, st)
	for _, shape := range []string{"chain", "subgate"} {
		k := kinds[slices.IndexFunc(kinds, func(k soakKind) bool { return k.shape == shape && k.allow })]
		b.Run(shape, func(b *testing.B) {
			cpu := func() float64 {
				var sum float64
				for _, n := range soakShapes[shape] {
					s, err := scrape(addrs[n])
					if err != nil {
						b.Fatal(err)
					}
					sum += s.cpu
				}
				return sum
			}
			var next atomic.Int64
			var failed atomic.Value
			var wg sync.WaitGroup
			before := cpu()
			start := time.Now()
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if code := serveOnce(st, k); code != 200 {
							failed.Store(code)
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			used := cpu() - before
			if f := failed.Load(); f != nil {
				b.Fatalf("%s: answered %v", k.path, f)
			}
			b.ReportMetric(1000*used/float64(b.N), "cpu-ms/req")
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
		})
	}
}
