package main

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/subgate/subgate/pkg/chain"
	"github.com/subgate/subgate/pkg/check"
	"github.com/subgate/subgate/pkg/config"
)

// BenchmarkDecide is subgate's decision alone, with either identity_lookup (no PDK round trip): the jwt
// check (a repeated token: the verified-token cache), the ownership HGET on
// miniredis and the identity GET on a local server. Profile it with
// -cpuprofile to see what the decisions cost beside the unavoidable I/O.
func BenchmarkDecide(b *testing.B) {
	m := alicesRedis(b)
	id, _ := identity(b)
	for _, mode := range []string{chain.IdentitySequential, chain.IdentityParallel} {
		b.Run("identity_lookup="+mode, func(b *testing.B) {
			var c chain.Config
			config.Defaults(&c)
			raw, _ := json.Marshal(map[string]any{"identity_lookup": mode, "jwt": jwtSection(nil),
				"ownership": map[string]any{"redis": map[string]any{"addresses": []string{m.Addr()}}},
				"identity":  map[string]any{"identity_url": id.URL, "forward_headers": []string{"Authorization", "X-Customer-Id"}}})
			if err := config.Decode(raw, &c); err != nil {
				b.Fatal(err)
			}
			ch, err := chain.New(c)
			if err != nil {
				b.Fatal(err)
			}
			tok := token(b, alice)
			b.ReportAllocs()
			for b.Loop() {
				h := map[string][]string{"authorization": {"Bearer " + tok}} // Decide changes it, as Kong's plugins would
				if _, d := ch.Decide(context.Background(), &check.Request{Headers: h, Path: "/subscriptions/1234"}, &check.Audit{}); d != nil {
					b.Fatal(d)
				}
			}
		})
	}
}
