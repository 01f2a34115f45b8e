package spec

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/subgate/subgate/spec/stack"
)

// BenchmarkChain measures a request through the local gateway: each
// route's plugins run as real plugin-server processes, every PDK call a
// round trip over the unix socket as Kong drives them, then the proxy to
// the echo upstream. "no-plugin" is the gateway and proxy alone, the
// baseline to subtract. Compare with the per-plugin benchmarks in pkg/ to
// see what the protocol costs. The shapes side by side through a real
// Kong, with the floor, are make bench-kong's (spec/benchkong).
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
