package jwtverify

import (
	"testing"
)

// FuzzVerify feeds arbitrary bytes to the token path: no input may panic,
// and nothing but a token signed by the configured key may verify.
func FuzzVerify(f *testing.F) {
	s := newSigner(f, "ES256")
	h := newSigner(f, "HS256")
	good := s.sign(f, "k1", claimsAt(t0))
	f.Add(good)
	f.Add(h.sign(f, "h1", claimsAt(t0)))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Add("")
	v := mustVerifier(f, Config{Keys: []Key{s.key(f, "k1"), h.key(f, "h1")}, CacheSize: 64, Now: fixedNow(t0)})
	f.Fuzz(func(t *testing.T, tok string) {
		got, err := v.Verify(tok)
		if err != nil {
			if KindOf(err) == 0 {
				t.Fatalf("refusal without a kind: %v", err)
			}
			return
		}
		if got.Algorithm != "ES256" && got.Algorithm != "HS256" {
			t.Fatalf("verified with algorithm %q", got.Algorithm)
		}
	})
}
