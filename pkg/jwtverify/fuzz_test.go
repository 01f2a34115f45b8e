package jwtverify

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// fixedSigners are one signer per key type (HMAC, RSA PKCS#1 v1.5 and PSS,
// P-256, P-384, Ed25519) with keys from testdata/keys, so the same corpus
// entry verifies on every run; kid is the algorithm.
func fixedSigners(tb testing.TB) []signer {
	tb.Helper()
	load := func(file string) crypto.Signer {
		raw, err := os.ReadFile(filepath.Join("testdata", "keys", file))
		if err != nil {
			tb.Fatal(err)
		}
		b, _ := pem.Decode(raw)
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			tb.Fatal(err)
		}
		return k.(crypto.Signer)
	}
	var out []signer
	for alg, file := range map[string]string{"RS256": "rsa2048.pem", "PS256": "rsa2048.pem", "ES256": "p256.pem", "ES384": "p384.pem", "EdDSA": "ed25519.pem"} {
		k := load(file)
		der, err := x509.MarshalPKIXPublicKey(k.Public())
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, signer{alg: alg, priv: k, pub: k.Public(),
			pubPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))})
	}
	secret := []byte("fuzz-only-hmac-secret-of-32-bytes-or-more")
	return append(out, signer{alg: "HS256", secret: secret, priv: secret})
}

// FuzzVerify feeds arbitrary bytes to the token path with a key of every
// type configured: no input may panic, every refusal has a kind, and a token
// verifies only with the algorithm its kid's key is fixed to.
func FuzzVerify(f *testing.F) {
	signers := fixedSigners(f)
	var keys []Key
	algOf := map[string]string{}
	for _, s := range signers {
		keys = append(keys, s.key(f, s.alg))
		algOf[s.alg] = s.alg
		f.Add(s.sign(f, s.alg, claimsAt(t0)))
	}
	rs := signers[0]
	f.Add(rs.sign(f, "ES256", claimsAt(t0))) // kid of another key type
	f.Add(signWithHeader(f, rs, jwt.MapClaims{"alg": "none", "kid": "RS256"}))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Add("")
	v := mustVerifier(f, Config{Keys: keys, CacheSize: 64, Now: fixedNow(t0)})
	for _, s := range signers { // the seeds reach past the signature check
		if _, err := v.Verify(s.sign(f, s.alg, claimsAt(t0))); err != nil {
			f.Fatalf("%s seed does not verify: %v", s.alg, err)
		}
	}
	f.Fuzz(func(t *testing.T, tok string) {
		got, err := v.Verify(tok)
		if err != nil {
			if KindOf(err) == 0 {
				t.Fatalf("refusal without a kind: %v", err)
			}
			return
		}
		if want, ok := algOf[got.Kid]; !ok || got.Algorithm != want {
			t.Fatalf("verified kid %q with algorithm %q", got.Kid, got.Algorithm)
		}
	})
}

// signWithHeader signs claimsAt(t0) with s but with header fields replaced,
// e.g. an alg the signature does not match.
func signWithHeader(tb testing.TB, s signer, hdr jwt.MapClaims) string {
	tb.Helper()
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(s.alg), claimsAt(t0))
	for k, v := range hdr {
		tok.Header[k] = v
	}
	out, err := tok.SignedString(s.priv)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}
