package redisconn

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/subgate/subgate/pkg/redistest"
	"github.com/subgate/subgate/pkg/tlsconf"
	"github.com/subgate/subgate/pkg/tlsconf/tlstest"
)

// tlsRedis is a real redis-server that speaks TLS only and requires a
// client certificate from the test CA.
func tlsRedis(t *testing.T, p *tlstest.PKI) *redistest.Server {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(p.ClientCert, p.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	return redistest.StartTLS(t, redistest.TLSOptions{CertFile: p.ServerCert, KeyFile: p.ServerKey, CAFile: p.CAFile, RequireClient: true,
		Client: &tls.Config{RootCAs: p.Pool(), Certificates: []tls.Certificate{pair}}})
}

func pingTLS(t *testing.T, c Config) error {
	t.Helper()
	c.DialTimeoutMs, c.ReadTimeoutMs, c.MaxRetries = 2000, 2000, -1
	rdb, err := c.Client("redis")
	if err != nil {
		return err
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return rdb.Ping(ctx).Err()
}

// Against a real redis-server started with --tls-port and
// --tls-auth-clients yes: the CA bundle and the client certificate get a
// PING through, to a single node and through a Sentinel that speaks TLS
// too; without the bundle, the certificate, TLS itself or with a server
// name the certificate does not hold, the connection fails.
func TestTLSToARealRedis(t *testing.T) {
	p := tlstest.New(t)
	srv := tlsRedis(t, p)
	files := tlsconf.Files{CAFile: p.CAFile, CertFile: p.ClientCert, KeyFile: p.ClientKey}
	good := Config{Addresses: []string{srv.Addr}, TLS: true, Files: files}
	if err := pingTLS(t, good); err != nil {
		t.Fatalf("CA bundle and client certificate: %v", err)
	}
	named := good
	named.TLSServerName = "localhost"
	if err := pingTLS(t, named); err != nil {
		t.Fatalf("tls_server_name localhost (in the certificate): %v", err)
	}
	rdb, err := Shared(good, "redis")
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(context.Background(), "k", "v", 0).Err(); err != nil {
		t.Fatalf("the shared client: %v", err)
	}
	for name, c := range map[string]Config{
		"no client certificate": {Addresses: []string{srv.Addr}, TLS: true, Files: tlsconf.Files{CAFile: p.CAFile}},
		"system roots":          {Addresses: []string{srv.Addr}, TLS: true, Files: tlsconf.Files{CertFile: p.ClientCert, KeyFile: p.ClientKey}},
		"plain TCP":             {Addresses: []string{srv.Addr}},
		"another server name":   {Addresses: []string{srv.Addr}, TLS: true, TLSServerName: "redis.internal", Files: files},
	} {
		if err := pingTLS(t, c); err == nil {
			t.Errorf("%s: PING succeeded", name)
		}
	}

	// Sentinel over TLS: go-redis dials the Sentinels and the master they
	// name with the same TLS settings.
	pair, err := tls.LoadX509KeyPair(p.ClientCert, p.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	sentinel := redistest.StartSentinelTLS(t, srv, "tlsmaster", redistest.TLSOptions{CertFile: p.ServerCert, KeyFile: p.ServerKey,
		CAFile: p.CAFile, RequireClient: true, Client: &tls.Config{RootCAs: p.Pool(), Certificates: []tls.Certificate{pair}}})
	viaSentinel := Config{Addresses: []string{sentinel.Addr}, MasterName: "tlsmaster", TLS: true, Files: files}
	if err := pingTLS(t, viaSentinel); err != nil {
		t.Fatalf("through a TLS Sentinel: %v", err)
	}
	viaSentinel.Files = tlsconf.Files{CAFile: p.CAFile}
	if err := pingTLS(t, viaSentinel); err == nil {
		t.Fatal("through a TLS Sentinel without a client certificate: PING succeeded")
	}
}

// Files without tls: true, or a certificate without its key, are refused at
// instance start (the key pair also by Kong's schema: mutually_required).
func TestTLSSettingsThatCannotWork(t *testing.T) {
	p := tlstest.New(t)
	for name, tc := range map[string]struct {
		c    Config
		want string
	}{
		"files without tls": {Config{Addresses: []string{"127.0.0.1:1"}, Files: tlsconf.Files{CAFile: p.CAFile}}, "redis: tls_server_name, tls_ca_file, tls_cert_file and tls_key_file need tls: true"},
		"name without tls":  {Config{Addresses: []string{"127.0.0.1:1"}, TLSServerName: "x"}, "need tls: true"},
		"cert without key":  {Config{Addresses: []string{"127.0.0.1:1"}, TLS: true, Files: tlsconf.Files{CertFile: p.ClientCert}}, "all or none of these fields must be set: 'tls_cert_file', 'tls_key_file'"},
		"unreadable CA":     {Config{Addresses: []string{"127.0.0.1:1"}, TLS: true, Files: tlsconf.Files{CAFile: p.Dir + "/none.pem"}}, "redis.tls_ca_file: cannot read"},
	} {
		if _, err := Shared(tc.c, "redis"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}
