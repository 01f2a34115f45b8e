// Package health is what a plugin server answers on GET /live and GET
// /ready (pkg/kongx serves them on its -metrics-addr listener). Live: the
// process serves HTTP. Ready: its configuration loaded (at least one
// plugin instance started without error, or none asked for yet) and every
// dependency it holds answering: the process-wide Redis clients and stream
// followers register themselves here when they are made.
package health

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Check reports whether one dependency is usable now; ctx bounds it.
type Check func(ctx context.Context) error

var (
	mu     sync.Mutex
	checks = map[string]Check{}
)

// Register adds (or, under a name already registered, replaces) a check.
// The name says what is checked (a Redis's addresses, a stream) and never
// a secret. A client made anew for the same dependency (a rotated
// password) replaces the old one's check.
func Register(name string, c Check) {
	mu.Lock()
	checks[name] = c
	mu.Unlock()
}

// The instance starts, counted as pkg/kongx reports them.
var (
	started, refused atomic.Int64
	lastRefusal      atomic.Value // string
)

// InstanceStarted records the outcome of one plugin instance's start (its
// config decoded and its check built, or the reason not).
func InstanceStarted(err error) {
	if err == nil {
		started.Add(1)
		return
	}
	refused.Add(1)
	lastRefusal.Store(err.Error())
}

// Timeout bounds each check of a /ready probe (they run concurrently).
const Timeout = time.Second

// Result is one line of a readiness report.
type Result struct {
	Name string
	Err  error
}

// Ready runs every check and reports each, sorted by name, and whether all
// passed. The configuration is ready when an instance has started without
// error, or when none has been asked for yet (a plugin server waiting for
// its first request is ready to serve it); it is not when every start so
// far failed.
func Ready(ctx context.Context) ([]Result, bool) {
	ok, bad := started.Load(), refused.Load()
	cfg := Result{Name: "config"}
	if ok == 0 && bad > 0 {
		last, _ := lastRefusal.Load().(string)
		cfg.Err = fmt.Errorf("%d instance starts, none without error; last: %s", bad, last)
	}
	mu.Lock()
	names := make([]string, 0, len(checks))
	for n := range checks {
		names = append(names, n)
	}
	fns := make([]Check, len(names))
	slices.Sort(names)
	for i, n := range names {
		fns[i] = checks[n]
	}
	mu.Unlock()
	out := make([]Result, len(names))
	var wg sync.WaitGroup
	for i := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, Timeout)
			defer cancel()
			out[i] = Result{Name: names[i], Err: fns[i](cctx)}
		}()
	}
	wg.Wait()
	out = append([]Result{cfg}, out...)
	all := true
	for _, r := range out {
		all = all && r.Err == nil
	}
	return out, all
}

// Handler answers GET /live (200 "live") and GET /ready (200 when Ready,
// else 503; the body lists each check, "ok name" or "fail name: why").
func Handler() http.Handler {
	mux := http.NewServeMux()
	Add(mux)
	return mux
}

// Add adds GET /live and GET /ready to mux.
func Add(mux *http.ServeMux) {
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("live\n"))
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		res, ok := Ready(r.Context())
		var b strings.Builder
		if ok {
			b.WriteString("ready\n")
		} else {
			b.WriteString("not ready\n")
		}
		for _, x := range res {
			if x.Err == nil {
				fmt.Fprintf(&b, "ok %s\n", x.Name)
			} else {
				fmt.Fprintf(&b, "fail %s: %s\n", x.Name, oneLine(x.Err))
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write([]byte(b.String()))
	})
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// reset forgets every check and count (tests).
func reset() {
	mu.Lock()
	checks = map[string]Check{}
	mu.Unlock()
	started.Store(0)
	refused.Store(0)
}
