package usercontext

import (
	"context"
	"testing"
)

// BenchmarkLookup: the allow path with a fresh lookup against a local
// identity service (keep-alive HTTP on loopback), and the 503 fallback path
// (the identity service answers 503, the cached context serves).
func BenchmarkLookup(b *testing.B) {
	id := newIdentity(b, ok("u1"))
	c, err := NewClient(Config{IdentityURL: id.srv.URL, RetryAfterSeconds: 1})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("fresh", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if out, d := c.Lookup(ctx, creds); d != nil || out.Cached {
				b.Fatal(d)
			}
		}
	})
	id.set(answer{status: 503})
	b.Run("503-fallback", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if out, d := c.Lookup(ctx, creds); d != nil || !out.Cached {
				b.Fatal(d)
			}
		}
	})
}
