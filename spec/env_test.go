package spec

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/subgate/subgate/docker/demosvc"
	"github.com/subgate/subgate/spec/stack"
)

// A plugin server started by Kong sees only TZ and the variables declared
// with nginx_main_env (spec/kongsim/env.go). jwt-claims with an HS256 key
// whose secret_env names an undeclared variable cannot build its key: every
// request is 500 plugin_misconfigured. Declared, the same config verifies.
// The other two sources work with the environment cleared: a vault
// reference (Kong resolves it from its own environment before the config
// reaches the plugin) and a file.
func TestSecretsReachJWTClaimsWithTheEnvironmentCleared(t *testing.T) {
	const name = "SUBGATE_SPEC_HS256_SECRET"
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	secret := hex.EncodeToString(raw)
	t.Setenv(name, secret) // set in the process that starts "Kong"
	file := filepath.Join(t.TempDir(), "hs-secret")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	upstream := httptest.NewServer(demosvc.Echo())
	defer upstream.Close()
	yml := func(source string) string {
		return fmt.Sprintf(`_format_version: "3.0"
services:
  - name: echo
    url: %s
    routes:
      - name: hs
        paths: [/hs]
        strip_path: false
        plugins:
          - name: jwt-claims
            config:
              keys: [{kid: hs, algorithm: HS256, %s}]
`, upstream.URL, source)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": alice, "country": "DE", "exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"] = "hs"
	signed, err := tok.SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		source   string
		declared []string
		status   int
		code     string
	}{
		{"secret_env undeclared", "secret_env: " + name, []string{}, 500, "plugin_misconfigured"},
		{"secret_env declared with nginx_main_env", "secret_env: " + name, []string{name}, 200, ""},
		{"secret as a vault reference", `secret: "{vault://env/` + name + `}"`, []string{}, 200, ""},
		{"secret_file", "secret_file: " + file, []string{}, 200, ""},
	}
	eachGateway(t, func(t *testing.T, kong string) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				e := startEdge(t, stack.EdgeOptions{Plugins: []string{"jwt-claims"}, KongYML: []byte(yml(c.source)), Kong: kong, MainEnv: c.declared})
				status, _, body := send(t, e.URL, "GET", "/hs", http.Header{"Authorization": {"Bearer " + signed}})
				var got struct{ Code, Message string }
				_ = json.Unmarshal(body, &got)
				if status != c.status || got.Code != c.code {
					t.Fatalf("got %d %s, want %d %q", status, body, c.status, c.code)
				}
				if c.status != 500 {
					return
				}
				// The plugin says why in its own output, and, at Kong's
				// default log_level notice, in Kong's error log: it writes
				// it through kong.log.err inside the request.
				why := "environment variable " + name + " is unset or empty"
				for deadline := time.Now().Add(5 * time.Second); !strings.Contains(e.Output.Of("jwt-claims"), why); time.Sleep(10 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("the plugin did not say why in its output:\n%s", e.Output)
					}
				}
				if log := strings.Join(e.PluginLog(), "\n"); !strings.Contains(log, why) || !strings.Contains(log, "[error] [kong] pb_rpc.lua:233 ") {
					t.Fatalf("the refused config is not in Kong's error log at notice:\n%s", log)
				}
			})
		}
	})
}

// The metrics listener is a flag of the start command (kong.conf's
// pluginserver_<name>_start_cmd), not an environment variable, so it works
// in the environment nginx leaves a plugin server.
func TestMetricsAddrIsAStartCommandFlag(t *testing.T) {
	e := startEdge(t, stack.EdgeOptions{Plugins: []string{"jwt-claims"}, KongYML: []byte("_format_version: \"3.0\"\n"), MainEnv: []string{}})
	addr := e.Deployment.Metrics["jwt-claims"]
	if addr == "" {
		t.Fatal("kong/plugins.env starts jwt-claims without -metrics-addr")
	}
	var body []byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			break
		}
	}
	if !strings.Contains(string(body), "subgate_build_info") { // decision series start with an instance
		t.Fatalf("no metrics on %s: %q", addr, body)
	}
}
