package spec

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/docker/demosvc"
	"github.com/subgate/subgate/pkg/redistest"
	"github.com/subgate/subgate/pkg/tlsconf/tlstest"
	"github.com/subgate/subgate/spec/stack"
)

// TestTLSToEveryDependency: through Kong, jwt-claims fetches its keys from a
// JWKS endpoint and user-context asks an identity service, both over HTTPS
// that requires a client certificate, and user-context's shared level lives
// in a redis-server that speaks TLS only and requires one too; all with a
// CA and certificates generated for the test. With the CA bundle and the
// client certificates the request is allowed and the shared entry lands in
// the TLS Redis; a route whose JWKS settings lack the client certificate
// answers 503 keys_unavailable, one whose identity settings lack it 504
// identity_timeout (a connection failure, never the cache).
func TestTLSToEveryDependency(t *testing.T) {
	eachGateway(t, func(t *testing.T, kong string) {
		p := tlstest.New(t)
		mtls := func(h http.Handler) string {
			srv := httptest.NewUnstartedServer(h)
			srv.TLS = p.ServerConfig(t, true)
			srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
			srv.StartTLS()
			t.Cleanup(srv.Close)
			return srv.URL
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		b64 := base64.RawURLEncoding.EncodeToString
		jwks := mtls(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{map[string]string{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
				"x": b64(key.X.FillBytes(make([]byte, 32))), "y": b64(key.Y.FillBytes(make([]byte, 32)))}}})
		}))
		identity := mtls(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			tok, _, _ := jwt.NewParser().ParseUnverified(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), jwt.MapClaims{})
			sub := ""
			if tok != nil {
				sub, _ = tok.Claims.GetSubject()
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"user_id":%q,"via":%q}`, sub, r.TLS.PeerCertificates[0].Subject.CommonName)
		}))
		pair, err := tls.LoadX509KeyPair(p.ClientCert, p.ClientKey)
		if err != nil {
			t.Fatal(err)
		}
		clientTLS := &tls.Config{RootCAs: p.Pool(), Certificates: []tls.Certificate{pair}}
		rs := redistest.StartTLS(t, redistest.TLSOptions{CertFile: p.ServerCert, KeyFile: p.ServerKey, CAFile: p.CAFile, RequireClient: true, Client: clientTLS})
		upstream := httptest.NewServer(demosvc.Echo())
		t.Cleanup(upstream.Close)

		files := fmt.Sprintf("tls_ca_file: %s\n              tls_cert_file: %s\n              tls_key_file: %s", p.CAFile, p.ClientCert, p.ClientKey)
		jwksFiles := fmt.Sprintf("jwks_tls_ca_file: %s\n              jwks_tls_cert_file: %s\n              jwks_tls_key_file: %s", p.CAFile, p.ClientCert, p.ClientKey)
		yml := fmt.Sprintf(`_format_version: "3.0"
services:
  - name: echo
    url: %[1]s
    routes:
      - name: me
        paths: [/me]
        plugins:
          - name: jwt-claims
            config:
              jwks_url: %[2]s/jwks
              %[5]s
          - name: user-context
            config:
              identity_url: %[3]s
              max_attempts: 1
              %[6]s
              shared_cache:
                redis:
                  addresses: [%[4]q]
                  tls: true
                  %[7]s
      - name: jwks-without-client-certificate
        paths: [/nocert-jwks]
        plugins:
          - name: jwt-claims
            config:
              jwks_url: %[2]s/nocert
              jwks_tls_ca_file: %[8]s
      - name: identity-without-client-certificate
        paths: [/nocert-identity]
        plugins:
          - name: user-context
            config:
              identity_url: %[3]s/nocert
              max_attempts: 1
              tls_ca_file: %[8]s
`, upstream.URL, jwks, identity, rs.Addr, jwksFiles, files, strings.ReplaceAll(files, "\n              ", "\n                  "), p.CAFile)
		e := startEdge(t, stack.EdgeOptions{Plugins: []string{"jwt-claims", "user-context"}, KongYML: []byte(yml), Kong: kong})

		tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"sub": alice, "country": "DE", "exp": time.Now().Add(time.Hour).Unix()})
		tok.Header["kid"] = "k1"
		signed, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{"Authorization": {"Bearer " + signed}}
		status, _, body := send(t, e.URL, "GET", "/me", h)
		var echo struct{ Headers map[string]string }
		if status != 200 || json.Unmarshal(body, &echo) != nil || echo.Headers["X-Customer-Id"] != alice ||
			echo.Headers["X-User-Context"] != fmt.Sprintf(`{"user_id":%q,"via":"subgate test client"}`, alice) {
			t.Fatalf("/me over TLS everywhere: %d %s", status, body)
		}
		rdb := redis.NewClient(&redis.Options{Addr: rs.Addr, TLSConfig: clientTLS})
		t.Cleanup(func() { rdb.Close() })
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if keys, _ := rdb.Keys(context.Background(), "subgate:identity-cache:*:c:*").Result(); len(keys) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no shared entry in the TLS Redis")
			}
		}
		for path, want := range map[string]string{"/nocert-jwks": "503 keys_unavailable", "/nocert-identity": "504 identity_timeout"} {
			status, _, body := send(t, e.URL, "GET", path, h)
			var d struct{ Code string }
			_ = json.Unmarshal(body, &d)
			if got := fmt.Sprintf("%d %s", status, d.Code); got != want {
				t.Errorf("%s: %s (%s), want %s", path, got, body, want)
			}
		}
	})
}
