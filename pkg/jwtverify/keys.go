package jwtverify

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/subgate/subgate/pkg/jwks"
)

// Key is one statically configured verification key. Its JSON tags make it
// usable directly as a Kong config field type.
type Key struct {
	// Kid is matched against the token's kid header; "" matches tokens
	// without a kid.
	Kid string `json:"kid"`
	// Algorithm is the one algorithm this key accepts (required).
	Algorithm string `json:"algorithm"`
	// PublicKey is a PEM public key (PKIX "PUBLIC KEY", PKCS#1 "RSA PUBLIC
	// KEY" or a "CERTIFICATE") for asymmetric algorithms.
	PublicKey string `json:"public_key"`
	// SecretEnv names the environment variable holding an HS* secret, so
	// the secret is not written in kong.yml.
	SecretEnv string `json:"secret_env"`
}

// minSecret is the shortest HMAC secret accepted per algorithm: RFC 7518
// 3.2 requires a key at least as long as the hash output.
var minSecret = map[string]int{"HS256": 32, "HS384": 48, "HS512": 64}

// resolved is a key ready for golang-jwt: the fixed algorithm and the key
// material of the type its verification method expects.
type resolved struct {
	alg string
	key any
}

func (k Key) resolve() (resolved, error) {
	where := fmt.Sprintf("key %q", k.Kid)
	alg := k.Algorithm
	if alg == "" {
		return resolved{}, fmt.Errorf("%s: algorithm is required (the token never chooses it)", where)
	}
	if n, hmac := minSecret[alg]; hmac {
		if k.PublicKey != "" {
			return resolved{}, fmt.Errorf("%s: %s takes secret_env, not public_key", where, alg)
		}
		if k.SecretEnv == "" {
			return resolved{}, fmt.Errorf("%s: %s needs secret_env naming the environment variable with the secret", where, alg)
		}
		secret := os.Getenv(k.SecretEnv)
		if secret == "" {
			return resolved{}, fmt.Errorf("%s: environment variable %s is unset or empty", where, k.SecretEnv)
		}
		if len(secret) < n {
			return resolved{}, fmt.Errorf("%s: the secret in %s has %d bytes; %s needs at least %d", where, k.SecretEnv, len(secret), alg, n)
		}
		return resolved{alg: alg, key: []byte(secret)}, nil
	}
	if !supported[alg] {
		return resolved{}, fmt.Errorf("%s: unsupported algorithm %q (supported: %s)", where, alg, strings.Join(Algorithms, ", "))
	}
	if k.SecretEnv != "" {
		return resolved{}, fmt.Errorf("%s: %s takes public_key, not secret_env", where, alg)
	}
	pub, err := parsePublicPEM(k.PublicKey)
	if err != nil {
		return resolved{}, fmt.Errorf("%s: %w", where, err)
	}
	if err := jwks.Fits(alg, pub); err != nil {
		return resolved{}, fmt.Errorf("%s: %w", where, err)
	}
	if r, ok := pub.(*rsa.PublicKey); ok && r.Size() < 256 {
		return resolved{}, fmt.Errorf("%s: RSA key of %d bits is too short (2048 minimum)", where, r.N.BitLen())
	}
	return resolved{alg: alg, key: pub}, nil
}

// Algorithms lists every algorithm a key may be configured with. "none" is
// not among them, ever.
var Algorithms = []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"}

var supported = func() map[string]bool {
	m := map[string]bool{}
	for _, a := range Algorithms {
		m[a] = true
	}
	return m
}()

func parsePublicPEM(s string) (crypto.PublicKey, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("public_key is empty")
	}
	block, rest := pem.Decode([]byte(strings.TrimSpace(s)))
	if block == nil {
		return nil, errors.New("public_key is not PEM")
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, errors.New("public_key holds more than one PEM block")
	}
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return c.PublicKey, nil
	}
	return nil, fmt.Errorf("public_key is a PEM %q block; want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE (never a private key)", block.Type)
}
