package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestCounterAndHistogramExposition(t *testing.T) {
	c := NewCounter("subgate_test_total", "Test counter.", "plugin", "code")
	h := NewHistogram("subgate_test_seconds", "Test histogram.", "plugin")
	if NewCounter("subgate_test_total", "again", "plugin", "code").f != c.f {
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

	srv := httptest.NewServer(Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	out := string(body)
	for _, want := range []string{
		"# TYPE subgate_test_total counter",
		`subgate_test_total{plugin="p",code="a"} 2`,
		`subgate_test_total{plugin="p",code="quo\"te"} 1`,
		"# TYPE subgate_test_seconds histogram",
		`subgate_test_seconds_bucket{plugin="p",le="0.0001"} 0`,
		`subgate_test_seconds_bucket{plugin="p",le="0.00025"} 1`,
		`subgate_test_seconds_bucket{plugin="p",le="1"} 1`,
		`subgate_test_seconds_bucket{plugin="p",le="+Inf"} 2`,
		`subgate_test_seconds_sum{plugin="p"} 2.0002`,
		`subgate_test_seconds_count{plugin="p"} 2`,
		"# TYPE subgate_decisions_total counter",
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
