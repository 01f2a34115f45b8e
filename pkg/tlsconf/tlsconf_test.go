package tlsconf_test

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/subgate/subgate/pkg/tlsconf"
	"github.com/subgate/subgate/pkg/tlsconf/tlstest"
)

// get fetches url over a transport with c.
func get(url string, c *tls.Config) error {
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: c}}).Get(url)
	if err == nil {
		resp.Body.Close()
	}
	return err
}

// A server that requires a client certificate: the CA bundle makes its
// certificate trusted, the client certificate gets past its demand; without
// either, or with another CA's bundle, the handshake fails.
func TestLoadTrustsTheBundleAndPresentsTheClientCertificate(t *testing.T) {
	p := tlstest.New(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 {
			t.Error("no client certificate reached the handler")
		}
	}))
	srv.TLS = p.ServerConfig(t, true)
	srv.StartTLS()
	defer srv.Close()

	full, err := tlsconf.Files{CAFile: p.CAFile, CertFile: p.ClientCert, KeyFile: p.ClientKey}.Load("x", "")
	if err != nil || full.Config == nil || full.Digest == "" {
		t.Fatalf("Load: %+v %v", full, err)
	}
	if full.Config.MinVersion != tls.VersionTLS12 {
		t.Fatalf("MinVersion %x", full.Config.MinVersion)
	}
	if err := get(srv.URL, full.Config); err != nil {
		t.Fatalf("with the bundle and the client certificate: %v", err)
	}
	caOnly, err := tlsconf.Files{CAFile: p.CAFile}.Load("x", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := get(srv.URL, caOnly.Config); err == nil {
		t.Fatal("a server that requires a client certificate accepted none")
	}
	if err := get(srv.URL, &tls.Config{GetClientCertificate: full.Config.GetClientCertificate}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("the system's roots trusted the test CA: %v", err)
	}
	other := tlstest.New(t)
	wrong, err := tlsconf.Files{CAFile: other.CAFile, CertFile: p.ClientCert, KeyFile: p.ClientKey}.Load("x", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := get(srv.URL, wrong.Config); err == nil {
		t.Fatal("another CA's bundle verified the server")
	}
	// The server name checked is the one given, not the one dialled.
	named, err := tlsconf.Files{CAFile: p.CAFile, CertFile: p.ClientCert, KeyFile: p.ClientKey}.Load("x", "redis.internal")
	if err != nil {
		t.Fatal(err)
	}
	if err := get(srv.URL, named.Config); err == nil || !strings.Contains(err.Error(), "redis.internal") {
		t.Fatalf("a certificate without the configured server name was accepted: %v", err)
	}
}

func TestLoadRefusesWhatCannotWork(t *testing.T) {
	p := tlstest.New(t)
	if l, err := (tlsconf.Files{}).Load("x", ""); err != nil || l.Config != nil || l.Digest != "" {
		t.Fatalf("no files: %+v %v", l, err)
	}
	for _, c := range []struct {
		f    tlsconf.Files
		want string
	}{
		{tlsconf.Files{CertFile: p.ClientCert}, "redis.tls_cert_file and redis.tls_key_file: set both or neither"},
		{tlsconf.Files{KeyFile: p.ClientKey}, "set both or neither"},
		{tlsconf.Files{CAFile: p.Dir + "/absent.pem"}, "redis.tls_ca_file: cannot read " + p.Dir + "/absent.pem: no such file"},
		{tlsconf.Files{CAFile: p.ClientKey}, `holds a "PRIVATE KEY" block`},
		{tlsconf.Files{CAFile: writeFile(t, "not pem")}, "holds no PEM certificate"},
		{tlsconf.Files{CertFile: p.ClientCert, KeyFile: p.ServerKey}, "private key does not match public key"},
		{tlsconf.Files{CertFile: p.ClientCert, KeyFile: p.Dir + "/nokey.pem"}, "redis.tls_key_file: cannot read"},
	} {
		_, err := c.f.Load("redis.", "")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.f, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "BEGIN") {
			t.Errorf("an error shows a file's contents: %v", err)
		}
	}
}

// The digest follows the contents: a rotated file makes a new one.
func TestDigestFollowsTheContents(t *testing.T) {
	p := tlstest.New(t)
	f := tlsconf.Files{CAFile: p.CAFile, CertFile: p.ClientCert, KeyFile: p.ClientKey}
	a, _ := f.Load("x", "")
	b, _ := f.Load("x", "")
	if a.Digest != b.Digest {
		t.Fatal("the same files, two digests")
	}
	if _, _, err := p.Issue("client", false); err != nil { // rewrites client.pem and client-key.pem
		t.Fatal(err)
	}
	c, err := f.Load("x", "")
	if err != nil || c.Digest == a.Digest {
		t.Fatalf("a rotated certificate kept its digest: %v", err)
	}
	ca, _ := tlsconf.Files{CAFile: p.CAFile}.Load("x", "")
	if ca.Digest == c.Digest {
		t.Fatal("the CA alone and the CA with a certificate share a digest")
	}
}

func writeFile(t *testing.T, s string) string {
	path := t.TempDir() + "/f.pem"
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// A client certificate rotated in place is presented on the next
// connections once ReloadEvery has passed, without a new Load; files that
// do not load leave the previous certificate in use.
func TestClientCertificateFollowsItsFiles(t *testing.T) {
	p := tlstest.New(t)
	var seen []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.TLS.PeerCertificates[0].SerialNumber.String())
	}))
	srv.TLS = p.ServerConfig(t, true)
	srv.StartTLS()
	defer srv.Close()
	l, err := tlsconf.Files{CAFile: p.CAFile, CertFile: p.ClientCert, KeyFile: p.ClientKey}.Load("", "")
	if err != nil {
		t.Fatal(err)
	}
	old := tlsconf.ReloadEvery
	t.Cleanup(func() { tlsconf.ReloadEvery = old })
	fresh := func() {
		t.Helper()
		// A new connection each time: a handshake asks for the certificate.
		if err := get(srv.URL, l.Config); err != nil {
			t.Fatal(err)
		}
	}
	fresh()
	if _, _, err := p.Issue("client", false); err != nil {
		t.Fatal(err)
	}
	fresh() // within ReloadEvery: the old one
	tlsconf.ReloadEvery = 0
	fresh()
	if len(seen) != 3 || seen[0] != seen[1] || seen[1] == seen[2] {
		t.Fatalf("serials presented: %v, want old, old, new", seen)
	}
	if err := os.WriteFile(p.ClientKey, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh()
	if seen[3] != seen[2] {
		t.Fatalf("a broken rotation replaced the certificate: %v", seen)
	}
}
