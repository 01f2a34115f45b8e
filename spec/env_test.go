package spec

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/subgate/subgate/docker/demosvc"
	"github.com/subgate/subgate/spec/gateway"
	"github.com/subgate/subgate/spec/kongsim"
)

// A plugin server started by Kong sees only TZ and the variables declared
// with nginx_main_env (spec/kongsim/env.go). jwt-claims with an HS256 key
// whose secret_env names an undeclared variable cannot build its key: every
// request is 500 plugin_misconfigured. Declared, the same config verifies.
// The other two sources work with the environment cleared: a vault
// reference (Kong resolves it from its own environment before the config
// reaches the plugin) and a file.
func TestSecretsReachJWTClaimsWithTheEnvironmentCleared(t *testing.T) {
	bin := filepath.Join(binaries(t), "jwt-claims")
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
	for _, c := range []struct {
		name     string
		source   string
		declared []string
		status   int
		code     string
	}{
		{"secret_env undeclared", "secret_env: " + name, nil, 500, "plugin_misconfigured"},
		{"secret_env declared with nginx_main_env", "secret_env: " + name, []string{name}, 200, ""},
		{"secret as a vault reference", `secret: "{vault://env/` + name + `}"`, nil, 200, ""},
		{"secret_file", "secret_file: " + file, nil, 200, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			prefix, err := kongsim.PrefixDir()
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(prefix)
			log := kongsim.NewErrorLog(0)
			srv, err := kongsim.Start(bin, prefix, kongsim.Options{Env: c.declared, Log: log})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Kill()
			g, err := gateway.Load([]byte(yml(c.source)), nil, map[string]*kongsim.Server{"jwt-claims": srv}, nil)
			if err != nil {
				t.Fatal(err)
			}
			g.Log = log
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", "/hs", nil)
			req.Header.Set("Authorization", "Bearer "+signed)
			g.ServeHTTP(rec, req)
			var body struct{ Code, Message string }
			_ = json.Unmarshal(rec.Body.Bytes(), &body)
			if rec.Code != c.status || body.Code != c.code {
				t.Fatalf("got %d %s, want %d %q", rec.Code, rec.Body, c.status, c.code)
			}
			if c.status != 500 {
				return
			}
			pid := srv.Pid()
			srv.Kill() // drains the output into the log
			why := "environment variable " + name + " is unset or empty"
			if !strings.Contains(log.SeenAt(kongsim.LogInfo), fmt.Sprintf("[jwt-claims:%d] ", pid)) || !strings.Contains(srv.Output(), why) {
				t.Fatalf("the plugin did not say why in its output:\n%s", log.SeenAt(kongsim.LogInfo))
			}
			// At Kong's default log_level notice the operator sees the reason:
			// the plugin writes it through kong.log.err inside the request.
			if !strings.Contains(log.SeenAt(kongsim.LogNotice), why) {
				t.Fatalf("the refused config is not visible at notice:\n%s", log.SeenAt(kongsim.LogNotice))
			}
		})
	}
}

// The metrics listener is a flag of the start command (kong.conf's
// pluginserver_<name>_start_cmd), not an environment variable, so it works
// in the environment nginx leaves a plugin server.
func TestMetricsAddrIsAStartCommandFlag(t *testing.T) {
	bin := filepath.Join(binaries(t), "jwt-claims")
	prefix, err := kongsim.PrefixDir()
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(prefix)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	srv, err := kongsim.Start(bin, prefix, kongsim.Options{Args: []string{"-metrics-addr", addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Kill()
	var body []byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			break
		}
	}
	if !strings.Contains(string(body), "subgate_decisions_total") {
		t.Fatalf("no metrics on %s: %q", addr, body)
	}
}
