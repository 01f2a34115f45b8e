package spec

import (
	"fmt"
	"os"
	"testing"

	"github.com/subgate/subgate/spec/stack"
)

// Found by the attack corpus, in Kong itself: right after a DB-less POST
// /config (what decK and the ingress controller send) that adds routes with
// their plugins, Kong 3.9.3 proxies a request to a new route with none of
// its plugins: measured 3-6 of 180 requests sent one after another right
// after 30 such POSTs, with Kong's own request-termination plugin as with
// subgate's (no plugin-server code is involved), none once the new config
// has settled (300 ms) and none after `kong reload`, whose new workers load
// the whole config before they serve. This test holds `kong reload` to
// that, and measures POST /config, failing on its window only with
// SUBGATE_KONG_POST_CONFIG_STRICT=1 (a Kong that closes it).
func TestKongAppliesANewConfig(t *testing.T) {
	w := setupKong(t, stack.Options{})
	yml, err := os.ReadFile("../kong/kong.yml")
	if err != nil {
		t.Fatal(err)
	}
	routes := func(round int) string {
		out := ""
		for i := 0; i < 6; i++ {
			out += fmt.Sprintf("\n      - name: new-%[1]d-%[2]d\n        paths: [/new-%[1]d-%[2]d]\n        plugins:\n          - name: request-termination\n            config: {status_code: 403}\n", round, i)
		}
		return out
	}
	unprotected := func(round int) (reached, sent int) {
		for i := 0; i < 6; i++ {
			r := w.do(t, "GET", fmt.Sprintf("/new-%d-%d/x", round, i), nil)
			sent++
			if r.upstrOK {
				reached++
			}
		}
		return reached, sent
	}
	const rounds = 20
	postReached, postSent := 0, 0
	for round := range rounds {
		if err := w.Reload(append(append([]byte(nil), yml...), routes(round)...)); err != nil {
			t.Fatal(err)
		}
		r, s := unprotected(round)
		postReached, postSent = postReached+r, postSent+s
	}
	reloadReached, reloadSent := 0, 0
	for round := rounds; round < 2*rounds; round++ {
		rw, err := w.RewriteKongYML(append(append([]byte(nil), yml...), routes(round)...))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Kong.Reload(rw); err != nil {
			t.Fatal(err)
		}
		r, s := unprotected(round)
		reloadReached, reloadSent = reloadReached+r, reloadSent+s
	}
	t.Logf("POST /config: %d of %d requests right after it reached a new route's upstream without its plugins; kong reload: %d of %d",
		postReached, postSent, reloadReached, reloadSent)
	if reloadReached > 0 {
		t.Errorf("kong reload served a new route without its plugins %d times", reloadReached)
	}
	if postReached > 0 && os.Getenv("SUBGATE_KONG_POST_CONFIG_STRICT") == "1" {
		t.Errorf("POST /config served a new route without its plugins %d times", postReached)
	}
}
