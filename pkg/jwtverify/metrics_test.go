package jwtverify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/subgate/subgate/pkg/metrics"
)

// Each shared JWKS URL shows the age of its last good fetch, +Inf before
// the first; the URL's query (an API key, say) never reaches the label.
func TestJWKSRefreshAgeMetric(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good := newEndpoint(t, ecKeyJWK("k1", &k.PublicKey))
	bad := newEndpoint(t)
	bad.mu.Lock()
	bad.status = 500
	bad.mu.Unlock()
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	goodSet := sharedSet(good.srv.URL+"/jwks?api_key=s3cret", setOptions{Now: clock})
	badSet := sharedSet(bad.srv.URL+"/jwks", setOptions{Now: clock})
	t.Cleanup(goodSet.Close)
	t.Cleanup(badSet.Close)
	for deadline := time.Now().Add(5 * time.Second); goodSet.LastSuccess().IsZero() || bad.hits.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the sets did not fetch")
		}
	}
	now.Add(int64(90 * time.Second))
	out := metrics.Exposition()
	if strings.Contains(out, "s3cret") {
		t.Fatalf("the JWKS URL's query reached the exposition:\n%s", out)
	}
	for _, want := range []string{
		`# TYPE subgate_jwks_refresh_age_seconds gauge`,
		`subgate_jwks_refresh_age_seconds{jwks_url="` + good.srv.URL + `/jwks"} 90`,
		`subgate_jwks_refresh_age_seconds{jwks_url="` + bad.srv.URL + `/jwks"} +Inf`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %q in:\n%s", want, regexp.MustCompile(`(?m)^(go|process)_.*\n`).ReplaceAllString(out, ""))
		}
	}
}
