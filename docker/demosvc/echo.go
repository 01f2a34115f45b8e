// Package demosvc holds the demo services behind the gateway: an echo
// upstream, an identity service, and (with payment-token) a payment
// service. Thin main packages next to it run them for the demos; the
// end-to-end specs run them in-process.
package demosvc

import (
	"encoding/json"
	"log"
	"net/http"
	"os"
	"strings"
)

// Echo is an upstream that answers with what it received, so a spec or a
// demo user can see exactly which headers the gateway forwarded.
func Echo() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := map[string]string{}
		for k, vs := range r.Header {
			h[k] = strings.Join(vs, ", ")
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"method": r.Method, "path": r.URL.EscapedPath(), "query": r.URL.RawQuery, "headers": h,
		})
	})
}

// Serve runs a demo service on $LISTEN (default :8080) until it fails.
func Serve(name string, h http.Handler) {
	addr := os.Getenv("LISTEN")
	if addr == "" {
		addr = ":8080"
	}
	log.Printf("%s listening on %s", name, addr)
	log.Fatal(http.ListenAndServe(addr, h))
}
