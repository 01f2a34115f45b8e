package jwtverify

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/subgate/subgate/pkg/tlsconf/tlstest"
)

// A JWKS endpoint over HTTPS that requires a client certificate from the
// test CA: with the CA bundle and the certificate its keys verify a token;
// without the certificate, or without the bundle, no key can be fetched and
// the token's answer is keys_unavailable (503), not a 401.
func TestJWKSOverMutualTLS(t *testing.T) {
	p := tlstest.New(t)
	a := newSigner(t, "ES256")
	doc, _ := json.Marshal(map[string]any{"keys": []any{ecJWK("a", a)}})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(doc) }))
	srv.TLS = p.ServerConfig(t, true)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tok := a.sign(t, "a", claimsAt(t0))

	v := mustVerifier(t, Config{JWKSURL: srv.URL + "/mtls", JWKSTLSCAFile: p.CAFile, JWKSTLSCertFile: p.ClientCert, JWKSTLSKeyFile: p.ClientKey, Now: fixedNow(t0)})
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("keys over mutual TLS: %v", err)
	}
	for name, c := range map[string]Config{
		"no client certificate": {JWKSURL: srv.URL + "/no-cert", JWKSTLSCAFile: p.CAFile},
		"system roots":          {JWKSURL: srv.URL + "/roots", JWKSTLSCertFile: p.ClientCert, JWKSTLSKeyFile: p.ClientKey},
	} {
		c.Now = fixedNow(t0)
		_, err := mustVerifier(t, c).Verify(tok)
		if KindOf(err) != KeysUnavailable {
			t.Errorf("%s: %v, want keys unavailable", name, err)
		}
	}
}

func TestJWKSTLSSettingsThatCannotWork(t *testing.T) {
	p := tlstest.New(t)
	for name, tc := range map[string]struct {
		c    Config
		want string
	}{
		"http URL":         {Config{JWKSURL: "http://idp/jwks", JWKSTLSCAFile: p.CAFile}, "need an https jwks_url"},
		"no JWKS URL":      {Config{Keys: []Key{newSigner(t, "ES256").key(t, "k")}, JWKSTLSCAFile: p.CAFile}, "need a jwks_url"},
		"cert without key": {Config{JWKSURL: "https://idp/jwks", JWKSTLSCertFile: p.ClientCert}, "all or none of these fields must be set: 'jwks_tls_cert_file', 'jwks_tls_key_file'"},
		"unreadable CA":    {Config{JWKSURL: "https://idp/jwks", JWKSTLSCAFile: p.Dir + "/none"}, "jwks_tls_ca_file: cannot read"},
	} {
		if _, err := New(tc.c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}
