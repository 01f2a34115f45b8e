// Package tlsconf is the client side of TLS to what the plugins call (Redis,
// the identity service, a JWKS endpoint), from PEM files: a CA bundle that
// replaces the system's roots, and a client certificate presented when the
// server asks for one (mutual TLS). The files are read when an instance
// starts, and a digest of their contents is part of what shares a client.
// The client certificate is also re-read when its files change (looked at,
// at a handshake, at most every ReloadEvery), so a certificate rotated in
// place (cert-manager, a mounted Secret) reaches long-lived clients too (a
// stream follower's): new connections present the new one. A new CA bundle
// takes effect with the next instance (a config change) for shared clients,
// and with a plugin-server restart for followers.
package tlsconf

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/subgate/subgate/pkg/config"
)

// Files name the PEM files of one TLS client. Embedded in a config struct,
// its fields are that record's (pkg/config flattens embedded structs).
type Files struct {
	CAFile   string `json:"tls_ca_file" doc:"PEM file of the CA certificates that verify the server, instead of the system's roots; read at instance start."`
	CertFile string `json:"tls_cert_file" doc:"PEM file of the client certificate (and its chain), presented when the server asks for one; with tls_key_file."`
	KeyFile  string `json:"tls_key_file" doc:"PEM file of the client certificate's private key (unencrypted PKCS#1, PKCS#8 or EC); with tls_cert_file."`
}

// Set reports whether any file is named.
func (f Files) Set() bool { return f.CAFile != "" || f.CertFile != "" || f.KeyFile != "" }

// Loaded is a TLS client configuration built from Files.
type Loaded struct {
	// Config is nil when no file is named (Go's defaults: the system's
	// roots, no client certificate); callers still decide whether to use
	// TLS at all.
	Config *tls.Config
	// Digest identifies the files' contents ("" when none is named): part
	// of the key under which a client is shared.
	Digest string
}

// Load reads the files and builds a TLS 1.2+ client configuration that
// checks serverName ("": the name the client dials). prefix comes before
// the field names in errors ("redis." for a record, "jwks_" where the
// fields are declared so); errors name the file, never its contents.
func (f Files) Load(prefix, serverName string) (Loaded, error) {
	if !f.Set() {
		return Loaded{}, nil
	}
	name := func(s string) string { return prefix + s }
	if (f.CertFile == "") != (f.KeyFile == "") {
		return Loaded{}, fmt.Errorf("%s and %s: set both or neither", name("tls_cert_file"), name("tls_key_file"))
	}
	h := sha256.New()
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	var errs []error
	if f.CAFile != "" {
		b, err := config.ReadFile(name("tls_ca_file"), f.CAFile)
		if err != nil {
			errs = append(errs, err)
		} else if pool, err := caPool(b); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %v", name("tls_ca_file"), f.CAFile, err))
		} else {
			c.RootCAs = pool
			h.Write(b)
		}
	}
	h.Write([]byte{0})
	if f.CertFile != "" {
		certPEM, err1 := config.ReadFile(name("tls_cert_file"), f.CertFile)
		keyPEM, err2 := config.ReadFile(name("tls_key_file"), f.KeyFile)
		switch {
		case err1 != nil:
			errs = append(errs, err1)
		case err2 != nil:
			errs = append(errs, err2)
		default:
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				// crypto/tls's messages name neither file's contents.
				errs = append(errs, fmt.Errorf("%s / %s: %s and %s: %v", name("tls_cert_file"), name("tls_key_file"), f.CertFile, f.KeyFile, err))
			} else {
				kp := &keyPair{certFile: f.CertFile, keyFile: f.KeyFile, pair: &pair, checked: time.Now()}
				kp.stamp = kp.stat()
				c.GetClientCertificate = kp.get
				h.Write(certPEM)
				h.Write([]byte{0})
				h.Write(keyPEM)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Loaded{}, err
	}
	return Loaded{Config: c, Digest: hex.EncodeToString(h.Sum(nil))}, nil
}

// ReloadEvery is how often, at most, a client certificate's files are
// looked at for a change.
var ReloadEvery = 10 * time.Second

// keyPair is a client certificate that follows its files.
type keyPair struct {
	certFile, keyFile string
	mu                sync.Mutex
	pair              *tls.Certificate
	checked           time.Time
	stamp             string // the files' sizes and modification times
}

func (k *keyPair) stat() string {
	var b strings.Builder
	for _, f := range []string{k.certFile, k.keyFile} {
		if st, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%d/%d;", st.Size(), st.ModTime().UnixNano())
		}
	}
	return b.String()
}

// get is the tls.Config's GetClientCertificate: the current pair, reloaded
// when its files changed; a pair that does not load keeps the old one (and
// says so), never none.
func (k *keyPair) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if time.Since(k.checked) < ReloadEvery {
		return k.pair, nil
	}
	k.checked = time.Now()
	if st := k.stat(); st != k.stamp {
		pair, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
		if err != nil {
			slog.Warn("tls: the client certificate's files changed but do not load; presenting the previous one",
				slog.String("cert_file", k.certFile), slog.String("key_file", k.keyFile), slog.String("error", err.Error()))
			return k.pair, nil
		}
		k.pair, k.stamp = &pair, st
	}
	return k.pair, nil
}

// caPool parses a bundle of PEM certificates; a bundle without one, or with
// a block that is not a certificate, is an error (a key file named as the CA
// by mistake must not leave the client trusting nothing, or the system).
func caPool(b []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := b; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("holds a %q block: only CERTIFICATE blocks belong in a CA bundle", block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %v", n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, errors.New("holds no PEM certificate")
	}
	return pool, nil
}
