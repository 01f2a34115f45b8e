package spec

import (
	"io"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/subgate/subgate/spec/realkong"
	"github.com/subgate/subgate/spec/stack"
)

// eachGateway runs f as two subtests: through the stand-in ("stand-in",
// kong "") and through a real Kong ("kong"; skipped or failed as
// realkong.Require says).
func eachGateway(t *testing.T, f func(t *testing.T, kong string)) {
	t.Run("stand-in", func(t *testing.T) { f(t, "") })
	t.Run("kong", func(t *testing.T) { f(t, realkong.Require(t)) })
}

// startEdge starts the gateway o describes with the shipped plugins.env
// and the built binaries; it is stopped when the test ends.
func startEdge(t *testing.T, o stack.EdgeOptions) *stack.Edge {
	t.Helper()
	o.BinDir, o.PluginsEnv = binaries(t), "../kong/plugins.env"
	e, err := stack.StartEdge(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// send sends one request to a gateway and returns its status, headers and
// body.
func send(t *testing.T, base, method, rawPath string, h http.Header) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, base+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = rawPath
	if h != nil {
		req.Header = h.Clone()
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// TestKongAnswersAsTheStandIn runs the scenario table (both shapes: the
// four-plugin chain and subgate) through a real Kong and through the
// stand-in, single Redis behind Sentinel as kong.yml says, and holds the
// stand-in to Kong: every check must give the same status, code,
// WWW-Authenticate, Retry-After and owned upstream headers, and Kong's
// error log must show the plugins the same lines at notice.
func TestKongAnswersAsTheStandIn(t *testing.T) {
	gateways := []struct {
		name string
		w    *world
	}{{"stand-in", setup(t)}, {"kong", setupKong(t, stack.Options{})}}
	seen := make([]map[string][]outcome, len(gateways))
	logs := make([][]string, len(gateways))
	for i, g := range gateways {
		t.Run(g.name, func(t *testing.T) {
			seen[i] = runScenarios(t, g.w, scenarios)
			for k, v := range runScenarios(t, g.w, redisDown) {
				seen[i][k] = v
			}
		})
		logs[i] = normalizedPluginLog(g.w.PluginLog())
	}
	if t.Failed() {
		return
	}
	checks := 0
	for key, sim := range seen[0] {
		real := seen[1][key]
		if len(sim) != len(real) {
			t.Errorf("%s: the stand-in answered %d checks, Kong %d", key, len(sim), len(real))
			continue
		}
		for i := range sim {
			checks++
			if !reflect.DeepEqual(sim[i], real[i]) {
				t.Errorf("%s check %d:\n  stand-in %+v\n  kong     %+v", key, i+1, sim[i], real[i])
			}
		}
	}
	if !slices.Equal(logs[0], logs[1]) {
		t.Errorf("Kong's error log at notice differs:\n  stand-in:\n    %s\n  kong:\n    %s", strings.Join(logs[0], "\n    "), strings.Join(logs[1], "\n    "))
	}
	t.Logf("%d scenario/shape pairs, %d checks: the stand-in answered as Kong; %d distinct plugin lines in the error log at notice", len(seen[0]), checks, len(logs[0]))
}

// normalizedPluginLog is the distinct plugin lines of an error log with
// what differs between two runs replaced: route and request ids, durations.
func normalizedPluginLog(lines []string) []string {
	set := map[string]bool{}
	for _, l := range lines {
		l = routeRequest.ReplaceAllString(l, "(route R, request Q)")
		l = duration.ReplaceAllString(l, "D")
		l = loopback.ReplaceAllString(l, "127.0.0.1:PORT")
		set[l] = true
	}
	out := make([]string, 0, len(set))
	for l := range set {
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}

var (
	routeRequest = regexp.MustCompile(`\(route [^,]+, request [0-9a-f]+\)`)
	duration     = regexp.MustCompile(`\b\d+(\.\d+)?(ns|µs|ms|s)\b`)
	loopback     = regexp.MustCompile(`127\.0\.0\.1:\d+`)
)

// On a real Redis Cluster (3 primaries, 3 replicas), through a real Kong:
// the scenario table (ownership lookups across slots, the payment
// follower's revocations, identity 503s) and the identity events' follower
// evicting the fallback cache.
func TestKongOnARedisCluster(t *testing.T) {
	w := setupKong(t, stack.Options{Cluster: true})
	runScenarios(t, w, scenarios)
	t.Run("identity events", func(t *testing.T) { identityEventsEvict(t, w) })
}

// One redis-server without Sentinel (the plugins given its address),
// through a real Kong: the scenario table, then Redis killed and back.
func TestKongOnASingleRedis(t *testing.T) {
	w := setupKong(t, stack.Options{Direct: true})
	runScenarios(t, w, scenarios)
	runScenarios(t, w, redisDown)
}
