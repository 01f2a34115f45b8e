package paytoken

import (
	"testing"
)

// BenchmarkCheck is the plugin's per-request decision: a fresh token (full
// ES256 verification) and a repeated one (verification cache), each with
// the customer, entitlement and revocation checks.
func BenchmarkCheck(b *testing.B) {
	f := newFixture(b, ecKey(b), "coach")
	tok, _ := f.iss.Issue(alice, []string{"coach"})
	if _, d := f.ch.verify(tok.Token, alice); d != nil { // warm the JWKS
		b.Fatal(d)
	}
	b.Run("repeated-token", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, d := f.ch.verify(tok.Token, alice); d != nil {
				b.Fatal(d)
			}
		}
	})
	b.Run("fresh-token", func(b *testing.B) {
		toks := make([]string, 512)
		for i := range toks {
			t, _ := f.iss.Issue(alice, []string{"coach"})
			toks[i] = t.Token
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			f.ch.verifier.Close() // empty the cache: every check verifies the signature
			if _, d := f.ch.verify(toks[i%len(toks)], alice); d != nil {
				b.Fatal(d)
			}
			i++
		}
	})
}
