package jwtverify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"testing"
)

// FuzzParseJWKS feeds arbitrary documents to the JWKS parser: no input may
// panic, and every key it accepts is a public key whose algorithm fits it
// (never HMAC, never a private key).
func FuzzParseJWKS(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good, _ := json.Marshal(map[string]any{"keys": []any{ecKeyJWK("k1", &k.PublicKey)}})
	f.Add(good)
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","alg":"RS256"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"","y":"","d":"x"}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		keys, err := parseJWKS(doc)
		if err != nil {
			return
		}
		if len(keys) == 0 {
			t.Fatal("no error and no key")
		}
		for kid, k := range keys {
			a, ok := algorithms[k.alg]
			if !ok || a.minSecret > 0 || a.fits == nil || !a.fits(k.pub) {
				t.Fatalf("key %q accepted with algorithm %q for a %T", kid, k.alg, k.pub)
			}
		}
	})
}
