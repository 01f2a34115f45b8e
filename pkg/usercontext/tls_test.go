package usercontext

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/tlsconf"
	"github.com/subgate/subgate/pkg/tlsconf/tlstest"
)

// An HTTPS identity service that requires a client certificate from the
// test CA: the CA bundle and the client certificate get the context; without
// the certificate or the bundle the handshake fails, a connection failure
// (never the cache). A rotated certificate makes a new client for the next
// instance, and the identity URL's cache lives on.
func TestIdentityOverMutualTLS(t *testing.T) {
	p := tlstest.New(t)
	var mode atomic.Value
	mode.Store("ok")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mode.Load() == "503" {
			w.WriteHeader(503)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"user_id":"` + strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ") + `","cn":"` + r.TLS.PeerCertificates[0].Subject.CommonName + `"}`))
	}))
	srv.TLS = p.ServerConfig(t, true)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	files := tlsconf.Files{CAFile: p.CAFile, CertFile: p.ClientCert, KeyFile: p.ClientKey}

	c := client(t, srv.URL, func(o *Config) { o.Files = files; o.MaxAttempts = 1 })
	res, den := c.Lookup(context.Background(), as("alice"))
	if den != nil || res.UserID != "alice" || !strings.Contains(string(res.Raw), `"cn":"subgate test client"`) {
		t.Fatalf("over mutual TLS: %+v %v", res, den)
	}
	for name, f := range map[string]tlsconf.Files{
		"no client certificate": {CAFile: p.CAFile},
		"system roots":          {CertFile: p.ClientCert, KeyFile: p.ClientKey},
	} {
		c := client(t, srv.URL, func(o *Config) { o.Files = f; o.MaxAttempts = 1 })
		if _, den := c.Lookup(context.Background(), as("bob")); den == nil || den.Code != denial.IdentityTimeout {
			t.Errorf("%s: %v, want the connection failure's identity_timeout", name, den)
		}
	}

	if _, _, err := p.Issue("client", false); err != nil { // rotated in place
		t.Fatal(err)
	}
	rotated := client(t, srv.URL, func(o *Config) { o.Files = files; o.MaxAttempts = 1 })
	if rotated.http == c.http {
		t.Fatal("a rotated certificate kept the old client")
	}
	if rotated.svc != c.svc {
		t.Fatal("a rotated certificate dropped the identity URL's cache")
	}
	mode.Store("503")
	if res, den := rotated.Lookup(context.Background(), as("alice")); den != nil || !res.Cached {
		t.Fatalf("alice's cached context after the rotation, on 503: %+v %v", res, den)
	}
}

func TestTLSFilesNeedHTTPS(t *testing.T) {
	p := tlstest.New(t)
	for name, tc := range map[string]struct {
		o    Config
		want string
	}{
		"http URL":         {Config{IdentityURL: "http://identity:8080/ctx", Files: tlsconf.Files{CAFile: p.CAFile}}, "need an https identity_url"},
		"cert without key": {Config{IdentityURL: "https://identity/ctx", Files: tlsconf.Files{CertFile: p.ClientCert}}, "all or none of these fields must be set: 'tls_cert_file', 'tls_key_file'"},
		"unreadable CA":    {Config{IdentityURL: "https://identity/ctx", Files: tlsconf.Files{CAFile: p.Dir + "/none"}}, "tls_ca_file: cannot read"},
	} {
		if _, err := NewClient(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}
