package jwtverify

import (
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkVerify measures one verification per algorithm without the cache,
// the cached hit, and golang-jwt alone on the same token, so the overhead
// of subgate's checks is visible.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []string{"HS256", "RS256", "PS256", "ES256", "ES384", "EdDSA"} {
		s := newSigner(b, alg)
		key := s.key(b, "k1")
		tok := s.sign(b, "k1", claimsAt(t0))
		uncached := mustVerifier(b, Config{Keys: []Key{key}, Issuers: []string{"https://id.example"}, Audiences: []string{"subgate"}, Now: fixedNow(t0)})
		cachedV := mustVerifier(b, Config{Keys: []Key{key}, Issuers: []string{"https://id.example"}, Audiences: []string{"subgate"}, CacheSize: 1024, Now: fixedNow(t0)})
		b.Run(alg+"/uncached", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := uncached.Verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(alg+"/cached", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := cachedV.Verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
		r, _ := key.resolve("keys[1]")
		p := jwt.NewParser(jwt.WithValidMethods([]string{alg}), jwt.WithTimeFunc(fixedNow(t0)))
		b.Run(alg+"/golang-jwt", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Parse(tok, func(*jwt.Token) (any, error) { return r.pub, nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
