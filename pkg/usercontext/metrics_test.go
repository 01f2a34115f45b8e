package usercontext

import (
	"context"
	"strings"
	"testing"

	"github.com/subgate/subgate/pkg/metrics"
)

// Per identity URL: the fallback cache's size, and the reads and hits
// whose ratio is the cache's hit ratio (a read counted once per lookup,
// however many 503s it met). Neither the URL's query nor a credential
// reaches the exposition.
func TestFallbackCacheMetrics(t *testing.T) {
	id := newIdentity(t, ok("u1"))
	c := client(t, id.srv.URL+"/ctx?api_key=s3cret", func(o *Config) { o.MaxAttempts = 3 })
	for _, u := range []string{"u1", "u2"} {
		if _, d := c.Lookup(context.Background(), map[string]string{"Authorization": "Bearer tok-" + u}); d != nil {
			t.Fatal(d)
		}
	}
	id.set(answer{status: 503})
	if out, d := c.Lookup(context.Background(), map[string]string{"Authorization": "Bearer tok-u1"}); d == nil && !out.Cached {
		t.Fatal("503 with a cached copy did not serve it")
	}
	if _, d := c.Lookup(context.Background(), map[string]string{"Authorization": "Bearer tok-u3"}); d == nil {
		t.Fatal("503 with nothing cached was not denied")
	}
	if id.hits.Load() != 1+3 {
		t.Fatalf("attempts %d, want 1 (served) + 3 (retried)", id.hits.Load())
	}

	out := metrics.Exposition()
	for _, secret := range []string{"s3cret", "tok-u"} {
		if strings.Contains(out, secret) {
			t.Fatalf("%q reached the exposition:\n%s", secret, out)
		}
	}
	label := `{identity_url="` + id.srv.URL + `/ctx"}`
	for _, want := range []string{
		"# TYPE subgate_identity_cache_entries gauge",
		"subgate_identity_cache_entries" + label + " 2",
		"# TYPE subgate_identity_cache_reads_total counter",
		"subgate_identity_cache_reads_total" + label + " 2",
		"# TYPE subgate_identity_cache_hits_total counter",
		"subgate_identity_cache_hits_total" + label + " 1",
		"# TYPE subgate_identity_lookups_total counter",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}
