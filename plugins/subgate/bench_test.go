package main

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/chain"
	"github.com/subgate/subgate/pkg/check"
	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/ownership"
)

// BenchmarkDecide is subgate's decision alone (no PDK round trip): the jwt
// check (a repeated token: the verified-token cache), the ownership HGET on
// miniredis and the identity GET on a local server. Profile it with
// -cpuprofile to see what the decisions cost beside the unavoidable I/O.
func BenchmarkDecide(b *testing.B) {
	m := miniredis.RunT(b)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	u, _ := ownership.ParseUUID(alice)
	if err := ownership.NewStore(rdb, "").Put(context.Background(), "DE", 1234, u); err != nil {
		b.Fatal(err)
	}
	id, _ := identity(b)
	var c chain.Config
	config.Defaults(&c)
	sec := jwtSection(nil)
	raw, _ := json.Marshal(map[string]any{"jwt": sec, "ownership": map[string]any{"redis": map[string]any{"addresses": []string{m.Addr()}}},
		"identity": map[string]any{"identity_url": id.URL, "forward_headers": []string{"Authorization", "X-Customer-Id"}}})
	if err := config.Decode(raw, &c); err != nil {
		b.Fatal(err)
	}
	ch, err := chain.New(c)
	if err != nil {
		b.Fatal(err)
	}
	tok := token(b, alice)
	h := map[string][]string{"authorization": {"Bearer " + tok}}
	b.ReportAllocs()
	for b.Loop() {
		if _, d := ch.Decide(context.Background(), &check.Request{Headers: h, Path: "/subscriptions/1234"}, &check.Audit{}); d != nil {
			b.Fatal(d)
		}
	}
}
