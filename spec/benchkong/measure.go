package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/subgate/subgate/spec/gateway"
	"github.com/subgate/subgate/spec/kongsim"
	"github.com/subgate/subgate/spec/realkong"
	"github.com/subgate/subgate/spec/stack"
)

// shape is one kind of request.
type shape struct {
	name    string
	path    string
	hdr     http.Header
	want    int      // the status every request must get
	servers []string // the plugin servers it runs through
}

// result is one measurement: one shape at one concurrency and worker count
// in one round.
type result struct {
	shape         string
	workers, conc int
	round         int
	requests      int
	p50, p99      time.Duration
	rps           float64
	kongCPU       float64            // µs of Kong's workers per request
	serverCPU     map[string]float64 // µs of each plugin server per request
	identityCalls float64            // identity GETs per request
}

// pluginCPU is the CPU of the shape's plugin servers per request.
func (r result) pluginCPU() float64 {
	var sum float64
	for _, v := range r.serverCPU {
		sum += v
	}
	return sum
}

func (r result) totalCPU() float64 { return r.kongCPU + r.pluginCPU() }

type bench struct {
	st      *stack.Stack
	kongs   map[int]*realkong.Kong
	o       options
	results []result
	started map[string]int // plugin server -> pid when measuring began
	// idle is the CPU each process spends without requests (µs per
	// second; "kong:<workers>" for a Kong's workers): timers and
	// background work, taken out of the figures per request.
	idle map[string]float64
}

// measureIdle measures the background CPU of every Kong's workers and
// every plugin server with no request in flight.
func (b *bench) measureIdle() {
	const d = 3 * time.Second
	pids := map[string]int{}
	for name := range b.st.Infos {
		pids[name] = b.st.Pid(name)
	}
	workers := map[int][]int{}
	kong0 := map[int]float64{}
	for w, k := range b.kongs {
		workers[w] = k.WorkerPids()
		kong0[w] = cpu(workers[w])
	}
	servers0 := cpuOf(pids)
	time.Sleep(d)
	servers1 := cpuOf(pids)
	b.idle = map[string]float64{}
	for name := range pids {
		b.idle[name] = (servers1[name] - servers0[name]) / d.Seconds()
	}
	for w := range b.kongs {
		b.idle[fmt.Sprintf("kong:%d", w)] = (cpu(workers[w]) - kong0[w]) / d.Seconds()
	}
}

// pids is the plugin server's pid when the first measurement began.
func (b *bench) pids(name string) int { return b.started[name] }

// measure runs one shape at concurrency c through the Kong with w workers:
// a warm-up, then o.duration of requests from c clients with keep-alive,
// each waiting for its answer before sending the next.
func (b *bench) measure(w, c int, s shape) (result, error) {
	if b.started == nil {
		b.started = map[string]int{}
		for name := range b.st.Infos {
			b.started[name] = b.st.Pid(name)
		}
	}
	k := b.kongs[w]
	tr := &http.Transport{MaxIdleConnsPerHost: c, MaxConnsPerHost: c, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var failed atomic.Value
	load := func(d time.Duration) ([]time.Duration, time.Duration) {
		lat := make([][]time.Duration, c)
		var wg sync.WaitGroup
		start := time.Now()
		end := start.Add(d)
		for g := range c {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) {
					t0 := time.Now()
					status, body, err := get(client, k.ProxyURL, s.path, s.hdr)
					lat[g] = append(lat[g], time.Since(t0))
					if err != nil || status != s.want {
						failed.Store(fmt.Sprintf("%d %s %v", status, body, err))
					}
				}
			}()
		}
		wg.Wait()
		return slices.Concat(lat...), time.Since(start)
	}
	load(b.o.warmup)
	pids := map[string]int{}
	for _, name := range s.servers {
		pids[name] = b.st.Pid(name)
	}
	workers := k.WorkerPids()
	kong0, servers0, hits0 := cpu(workers), cpuOf(pids), b.st.Identity.Hits()
	lat, elapsed := load(b.o.duration)
	kong1, servers1, hits1 := cpu(workers), cpuOf(pids), b.st.Identity.Hits()
	if f := failed.Load(); f != nil {
		return result{}, fmt.Errorf("a request got %s, want %d", f, s.want)
	}
	if len(lat) == 0 {
		return result{}, fmt.Errorf("no request completed")
	}
	slices.Sort(lat)
	n := float64(len(lat))
	sec := elapsed.Seconds()
	r := result{shape: s.name, workers: w, conc: c, requests: len(lat),
		p50: lat[int(0.50*n)], p99: lat[min(len(lat)-1, int(0.99*n))], rps: n / sec,
		kongCPU:   (kong1 - kong0 - b.idle[fmt.Sprintf("kong:%d", w)]*sec) / n,
		serverCPU: map[string]float64{}, identityCalls: float64(hits1-hits0) / n}
	for name := range pids {
		r.serverCPU[name] = (servers1[name] - servers0[name] - b.idle[name]*sec) / n
	}
	return r, nil
}

// clockTick is the kernel's USER_HZ: /proc's CPU times are in these units
// (100 on every Linux this runs on; sysconf(_SC_CLK_TCK) is not reachable
// without cgo).
const clockTick = 100

// cpu is the user and system CPU the processes have used, in µs
// (/proc/<pid>/stat: utime and stime, every thread's).
func cpu(pids []int) float64 {
	var sum float64
	for _, pid := range pids {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime is field 14, stime 15; comm may
		// hold spaces, so count from the last ')'.
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseFloat(f[11], 64)
		s, _ := strconv.ParseFloat(f[12], 64)
		sum += (u + s) * 1e6 / clockTick
	}
	return sum
}

func cpuOf(pids map[string]int) map[string]float64 {
	out := map[string]float64{}
	for name, pid := range pids {
		out[name] = cpu([]int{pid})
	}
	return out
}

// floorMatchesSubgate holds the floor to subgate before anything is
// measured: the same PDK calls in the same order (counted by the stand-in,
// which drives the same plugin-server processes), and the same upstream
// request (header names, and value sizes within a few bytes: the identity
// answer carries a timestamp) as the echo upstream receives it through
// Kong.
func floorMatchesSubgate(st *stack.Stack, yml []byte, allow http.Header) error {
	servers := map[string]*kongsim.Server{}
	log := kongsim.NewErrorLog(kongsim.DefaultLevel)
	for _, s := range st.Deployment.Servers {
		servers[s.Name] = kongsim.Connect(st.Infos[s.Name], s.Socket, log)
	}
	g, err := gateway.Load(yml, nil, servers, nil)
	if err != nil {
		return fmt.Errorf("the stand-in: %w", err)
	}
	var mu sync.Mutex
	calls := map[string][]string{}
	g.Observe = func(_ string, req *kongsim.Request) {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range []string{"floor", "subgate"} {
			if c := req.Calls(p); len(c) > 0 {
				calls[p] = c
			}
		}
	}
	for _, path := range []string{"/fl/coach/subscriptions/1234", "/sg/coach/subscriptions/1234"} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", path, nil)
		r.Header = allow.Clone()
		g.ServeHTTP(w, r)
		if w.Code != 200 {
			return fmt.Errorf("the stand-in: %s answered %d %s", path, w.Code, w.Body)
		}
	}
	if !slices.Equal(calls["floor"], calls["subgate"]) {
		return fmt.Errorf("the floor makes PDK calls %v, subgate %v: make spec/testdata/floor match", calls["floor"], calls["subgate"])
	}
	upstream := func(path string) (map[string]string, error) {
		status, body, err := get(http.DefaultClient, st.Kong.ProxyURL, path, allow)
		if err != nil || status != 200 {
			return nil, fmt.Errorf("%s: %d %s %v", path, status, body, err)
		}
		var echo struct{ Headers map[string]string }
		err = json.Unmarshal(body, &echo)
		return echo.Headers, err
	}
	floor, err := upstream("/fl/coach/subscriptions/1234")
	if err != nil {
		return err
	}
	sg, err := upstream("/sg/coach/subscriptions/1234")
	if err != nil {
		return err
	}
	var diffs, same []string
	for name, v := range sg {
		f, ok := floor[name]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s: subgate sends %d bytes, the floor nothing", name, len(v)))
		case len(f) < len(v)-8 || len(f) > len(v)+8:
			diffs = append(diffs, fmt.Sprintf("%s: subgate sends %d bytes, the floor %d", name, len(v), len(f)))
		default:
			same = append(same, fmt.Sprintf("%s %d/%d", name, len(v), len(f)))
		}
	}
	for name := range floor {
		if _, ok := sg[name]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: the floor sends it, subgate does not", name))
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		return fmt.Errorf("the floor's upstream request differs from subgate's (make the floor's upstream config in spec/benchkong match):\n  %s", strings.Join(diffs, "\n  "))
	}
	slices.Sort(same)
	say("the floor matches subgate: PDK calls %v; upstream headers (bytes, subgate/floor) %s", calls["subgate"], strings.Join(same, ", "))
	return nil
}

// writeRaw writes every measurement, one per line.
func (b *bench) writeRaw(path string) error {
	var buf bytes.Buffer
	fmt.Fprintln(&buf, "round\tworkers\tconc\tshape\trequests\tp50_us\tp99_us\treq_s\tkong_cpu_us\tplugin_cpu_us\tidentity_per_req\tservers")
	for _, r := range b.results {
		var servers []string
		for name, v := range r.serverCPU {
			servers = append(servers, fmt.Sprintf("%s=%.0f", name, v))
		}
		slices.Sort(servers)
		fmt.Fprintf(&buf, "%d\t%d\t%d\t%s\t%d\t%d\t%d\t%.0f\t%.0f\t%.0f\t%.2f\t%s\n", r.round+1, r.workers, r.conc, r.shape, r.requests,
			r.p50.Microseconds(), r.p99.Microseconds(), r.rps, r.kongCPU, r.pluginCPU(), r.identityCalls, strings.Join(servers, ","))
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
