package jwtverify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// signer is a test key pair for one algorithm.
type signer struct {
	alg    string
	priv   any
	pubPEM string
	secret []byte
	pub    crypto.PublicKey
}

var rsaKey = func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}()

func newSigner(t testing.TB, alg string) signer {
	t.Helper()
	s := signer{alg: alg}
	switch alg {
	case "HS256", "HS384", "HS512":
		raw := make([]byte, 32)
		_, _ = rand.Read(raw)
		s.secret = []byte(hex.EncodeToString(raw)) // 64 printable bytes: env-safe
		s.priv = s.secret
		return s
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		s.priv, s.pub = rsaKey, &rsaKey.PublicKey
	case "ES256":
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		s.priv, s.pub = k, &k.PublicKey
	case "ES384":
		k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		s.priv, s.pub = k, &k.PublicKey
	case "ES512":
		k, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		s.priv, s.pub = k, &k.PublicKey
	case "EdDSA":
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		s.priv, s.pub = priv, pub
	default:
		t.Fatalf("no signer for %s", alg)
	}
	der, err := x509.MarshalPKIXPublicKey(s.pub)
	if err != nil {
		t.Fatal(err)
	}
	s.pubPEM = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	return s
}

// key returns the static Key config for s, putting an HMAC secret in env.
func (s signer) key(t testing.TB, kid string) Key {
	if s.secret != nil {
		env := "SUBGATE_TEST_SECRET_" + kid
		t.Setenv(env, string(s.secret))
		return Key{Kid: kid, Algorithm: s.alg, SecretEnv: env}
	}
	return Key{Kid: kid, Algorithm: s.alg, PublicKey: s.pubPEM}
}

func (s signer) sign(t testing.TB, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(s.alg), claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	out, err := tok.SignedString(s.priv)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func claimsAt(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "c0ffee00-0000-4000-8000-000000000001", "country": "DE",
		"iss": "https://id.example", "aud": "subgate",
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	}
}

func fixedNow(t time.Time) func() time.Time { return func() time.Time { return t } }
