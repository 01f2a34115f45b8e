package spec

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/subgate/subgate/spec/stack"
)

// Kong starts a plugin instance inside the first request that reaches its
// config (kong/runloop/plugin_servers/plugin.lua get_instance_id), so a
// plugin's first request after a start runs against a fresh instance in a
// fresh process. It must be answered as any later request is.

// firstRequest is, per plugin, a request on a kong/kong.yml route whose
// answer does not depend on what came before: alice's JWT, and her
// payment-access-token where the route needs one.
type firstRequest struct {
	plugin, path string
	paid         bool
}

var firstRequests = []firstRequest{
	{"jwt-claims", "/me", false},
	{"subscription-owner", "/subscriptions/1234/deliveries", false},
	{"payment-token", "/training/plan", true},
	{"user-context", "/account", false},
	{"subgate", "/sg/coach/subscriptions/1234", true},
}

func (w *world) headerFor(t *testing.T, c firstRequest) http.Header {
	t.Helper()
	h := bearer(w.token(t, alice, "DE", time.Hour))
	if c.paid {
		pay, err := w.Payment.Token(alice, []string{"coach"}, false)
		if err != nil {
			t.Fatal(err)
		}
		h.Set("X-Payment-Token", pay.Token)
	}
	return h
}

// answer is what a client and the upstream see of a response, without
// what differs on every request: the request id of a denial, and the time
// the identity service stamps on each context it resolves.
func (r response) answer() string {
	if r.upstrOK {
		names := make([]string, 0, len(r.upstrm))
		for k := range r.upstrm {
			names = append(names, k)
		}
		sort.Strings(names)
		var b strings.Builder
		fmt.Fprintf(&b, "%d upstream saw", r.status)
		for _, k := range names {
			v := r.upstrm[k]
			if k == "X-Kong-Request-Id" {
				continue // Kong's id of each request, by design different
			}
			if k == "X-User-Context" {
				var ctx map[string]any
				if err := json.Unmarshal([]byte(v), &ctx); err == nil {
					delete(ctx, "resolved_at")
					nv, _ := json.Marshal(ctx)
					v = string(nv)
				}
			}
			fmt.Fprintf(&b, " %s=%q", k, v)
		}
		return b.String()
	}
	return fmt.Sprintf("%d %v %q", r.status, r.body["code"], r.body["message"])
}

// Through the stand-in and a real Kong (started with kong start, the plugin
// servers by their supervisor, as shipped).
func TestFirstRequestAfterAStartIsAnsweredAsALaterOne(t *testing.T) {
	eachGateway(t, firstRequestAfterAStart)
}

func firstRequestAfterAStart(t *testing.T, kong string) {
	for _, c := range firstRequests {
		t.Run(c.plugin, func(t *testing.T) {
			w := setupWith(t, stack.Options{Kong: kong}) // fresh plugin servers: no instance yet
			h := w.headerFor(t, c)
			first := w.do(t, "GET", c.path, h.Clone())
			later := w.do(t, "GET", c.path, h.Clone())
			if first.answer() != later.answer() {
				t.Errorf("the first request to %s after a start was answered\n  %s\nand the next one\n  %s", c.plugin, first.answer(), later.answer())
			}
			if later.status != 200 {
				t.Errorf("the later request: %s, want the upstream's 200", later.answer())
			}
		})
	}
}

func TestBurstOfFirstRequestsHasNo5xx(t *testing.T) {
	eachGateway(t, burstOfFirstRequests)
}

func burstOfFirstRequests(t *testing.T, kong string) {
	w := setupWith(t, stack.Options{Kong: kong}) // fresh plugin servers: every request below is among the first of its config
	cases := append(slices.Clone(firstRequests), firstRequest{"all four", "/coach/subscriptions/1234", true})
	const n = 32
	type result struct {
		path string
		resp response
		took time.Duration
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		c := cases[i%len(cases)]
		h := w.headerFor(t, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			r := w.do(t, "GET", c.path, h)
			results[i] = result{c.path, r, time.Since(t0)}
		}()
	}
	close(start)
	wg.Wait()
	took := make([]time.Duration, n)
	for i, r := range results {
		took[i] = r.took
		if r.resp.status >= 500 {
			t.Errorf("%s: %s", r.path, r.resp.answer())
		}
	}
	slices.Sort(took)
	p := func(q float64) time.Duration { return took[int(q*float64(n-1)+0.5)] }
	t.Logf("%d concurrent first requests over %d routes: p50 %v, p99 %v, max %v", n, len(cases), p(0.50).Round(time.Millisecond), p(0.99).Round(time.Millisecond), took[n-1].Round(time.Millisecond))
	if t.Failed() {
		t.Logf("error log at notice:\n%s", strings.Join(w.PluginLog(), "\n"))
	}
}
