package metrics

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// scrape fetches the exposition as Prometheus would (text format).
func scrape(t *testing.T) (string, http.Header) {
	t.Helper()
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	body, _ := io.ReadAll(resp.Body)
	return string(body), resp.Header
}

func TestCounterAndHistogramExposition(t *testing.T) {
	c := NewCounter("subgate_test_total", "Test counter.", "plugin", "code")
	h := NewHistogram("subgate_test_seconds", "Test histogram.", "plugin")
	if NewCounter("subgate_test_total", "again", "plugin", "code") != c {
		t.Fatal("registering a name twice made two metrics")
	}
	c.Inc("p", "a")
	c.Inc("p", "a")
	c.Inc("p", `quo"te`)
	h.Observe(200*time.Microsecond, "p")
	h.Observe(2*time.Second, "p")
	if c.Value("p", "a") != 2 {
		t.Fatalf("counter = %d", c.Value("p", "a"))
	}

	SetBuildInfo("p", "0.0.0")
	InstanceStarted("p", "r")
	out, hdr := scrape(t)
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q, want Prometheus text 0.0.4", ct)
	}
	// client_golang writes labels sorted by name.
	for _, want := range []string{
		"# HELP subgate_test_total Test counter.",
		"# TYPE subgate_test_total counter",
		`subgate_test_total{code="a",plugin="p"} 2`,
		`subgate_test_total{code="quo\"te",plugin="p"} 1`,
		"# TYPE subgate_test_seconds histogram",
		`subgate_test_seconds_bucket{plugin="p",le="5e-05"} 0`,
		`subgate_test_seconds_bucket{plugin="p",le="0.0001"} 0`,
		`subgate_test_seconds_bucket{plugin="p",le="0.00025"} 1`,
		`subgate_test_seconds_bucket{plugin="p",le="1"} 1`,
		`subgate_test_seconds_bucket{plugin="p",le="+Inf"} 2`,
		`subgate_test_seconds_sum{plugin="p"} 2.0002`,
		`subgate_test_seconds_count{plugin="p"} 2`,
		"# TYPE subgate_decisions_total counter",
		`subgate_decisions_total{code="",decision="allow",plugin="p",route="r"} 0`,
		"# TYPE subgate_decision_seconds histogram",
		`subgate_decision_seconds_count{plugin="p",route="r"} 0`,
		// the library's collectors
		"# TYPE go_goroutines gauge",
		"go_goroutines ",
		"go_memstats_alloc_bytes ",
		"process_resident_memory_bytes ",
		"process_open_fds ",
		"promhttp_metric_handler_requests_total",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}

func TestWrongLabelCountPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic on a wrong label count")
		}
	}()
	NewCounter("subgate_test_labels_total", "x", "a").Inc("1", "2")
}

func TestKindClashPanics(t *testing.T) {
	NewCounter("subgate_test_clash", "x")
	defer func() {
		if recover() == nil {
			t.Fatal("a histogram took a counter's name")
		}
	}()
	NewHistogram("subgate_test_clash", "x")
}

func TestBuildInfo(t *testing.T) {
	SetBuildInfo("jwt-claims", "9.9.9")
	SetBuildInfo("jwt-claims", "1.2.3") // replaces, does not add
	out, _ := scrape(t)
	want := `subgate_build_info{plugin="jwt-claims",revision="` + revision() + `",version="1.2.3"} 1`
	if !strings.Contains(out, want) || strings.Contains(out, `version="9.9.9"`) {
		t.Errorf("want only %s in:\n%s", want, out)
	}
	if revision() == "" {
		t.Error("empty revision")
	}
}

func TestFuncCollectors(t *testing.T) {
	n := 0.0
	RegisterGaugeFunc("subgate_test_gauge", "Test gauge.", []string{"url"}, func(emit func(float64, ...string)) {
		emit(1.5, "http://a/x")
		emit(2, "http://b/y")
	})
	RegisterCounterFunc("subgate_test_func_total", "Test func counter.", []string{"k"}, func(emit func(float64, ...string)) {
		n++
		emit(n, "v")
	})
	out, _ := scrape(t)
	for _, want := range []string{
		"# TYPE subgate_test_gauge gauge",
		`subgate_test_gauge{url="http://a/x"} 1.5`,
		`subgate_test_gauge{url="http://b/y"} 2`,
		"# TYPE subgate_test_func_total counter",
		`subgate_test_func_total{k="v"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	out, _ = scrape(t)
	if !strings.Contains(out, `subgate_test_func_total{k="v"} 2`) {
		t.Errorf("func counter not read again at the second scrape:\n%s", out)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("a name registered twice did not panic")
			}
		}()
		RegisterGaugeFunc("subgate_test_gauge", "again", nil, func(func(float64, ...string)) {})
	}()
}

// A collector emitting the wrong label count is left out and logged; the
// rest of the exposition is still served.
func TestBrokenCollectorDoesNotFailTheScrape(t *testing.T) {
	RegisterGaugeFunc("subgate_test_broken", "Broken.", []string{"a"}, func(emit func(float64, ...string)) {
		emit(1, "x", "y")
	})
	out, _ := scrape(t)
	if !strings.Contains(out, "# TYPE go_goroutines gauge") {
		t.Errorf("scrape lost the healthy metrics:\n%s", out)
	}
	if strings.Contains(out, "subgate_test_broken{") {
		t.Errorf("broken series exposed:\n%s", out)
	}
}

func TestURLLabel(t *testing.T) {
	for in, want := range map[string]string{
		"https://idp.example/.well-known/jwks.json":                "https://idp.example/.well-known/jwks.json",
		"https://user:s3cret@idp.example/jwks?api_key=s3cret#frag": "https://idp.example/jwks",
		"http://identity:8080/context":                             "http://identity:8080/context",
		"://nope":                                                  "invalid",
		"identity:8080/context?token=s3cret":                       "invalid",
		"https://[::1]:8443/jwks":                                  "https://[::1]:8443/jwks",
	} {
		if got := URLLabel(in); got != want || strings.Contains(got, "s3cret") {
			t.Errorf("URLLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

// The route label names an instance by what Kong's config metadata holds,
// most telling first, and stays bounded however many routes a config has.
func TestRouteLabel(t *testing.T) {
	for _, c := range []struct{ name, route, service, want string }{
		{"paid-api", "r-1", "s-1", "paid-api"},
		{"", "r-1", "s-1", "r-1"},
		{"", "", "s-1", "service:s-1"},
		{"", "", "", "global"},
	} {
		if got := RouteLabel(c.name, c.route, c.service); got != c.want {
			t.Errorf("RouteLabel(%q, %q, %q) = %q, want %q", c.name, c.route, c.service, got, c.want)
		}
	}
	for i := range MaxRoutes + 10 {
		RouteLabel("", fmt.Sprintf("route-%d", i), "")
	}
	if got := RouteLabel("", "one-more", ""); got != "other" {
		t.Errorf("past MaxRoutes: %q", got)
	}
	if got := RouteLabel("", "r-1", ""); got != "r-1" {
		t.Errorf("a value seen before the bound: %q", got)
	}
}
