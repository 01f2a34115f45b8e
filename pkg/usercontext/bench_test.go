package usercontext

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/subgate/subgate/pkg/redisconn"
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
	benchLookupPaths(b, c, id)
}

// BenchmarkLookupWithEvents: the same two paths on a route that follows
// identity events (miniredis): the fresh path indexes the entry by user,
// the fallback asks whether an event covers it and whether the follower
// is stale; neither calls Redis.
func BenchmarkLookupWithEvents(b *testing.B) {
	id := newIdentity(b, ok("u1"))
	m := miniredis.RunT(b)
	c, err := NewClient(Config{IdentityURL: id.srv.URL, RetryAfterSeconds: 1,
		Events: &EventsConfig{Redis: redisconn.Config{Addresses: []string{m.Addr()}}}})
	if err != nil {
		b.Fatal(err)
	}
	if !c.ev.f.AwaitFirstSync() {
		b.Fatal("no first sync")
	}
	benchLookupPaths(b, c, id)
}

// benchLookupPaths runs a fresh lookup, then (the identity service
// answering 503) the cached context's.
func benchLookupPaths(b *testing.B, c *Client, id *identity) {
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

// BenchmarkCacheStep: the in-process cost alone, without HTTP: caching a
// fresh context (index by user included) and the fallback's decision, on
// a route without and with identity events.
func BenchmarkCacheStep(b *testing.B) {
	id := newIdentity(b, ok("u1"))
	m := miniredis.RunT(b)
	for _, events := range []bool{false, true} {
		o := Config{IdentityURL: id.srv.URL + map[bool]string{false: "/plain", true: "/events"}[events], RetryAfterSeconds: 1}
		if events {
			o.Events = &EventsConfig{Redis: redisconn.Config{Addresses: []string{m.Addr()}}}
		}
		c, err := NewClient(o)
		if err != nil {
			b.Fatal(err)
		}
		if c.ev != nil && !c.ev.f.AwaitFirstSync() {
			b.Fatal("no first sync")
		}
		key, _ := c.key(creds)
		e := &Context{UserID: "u1", StoredAt: time.Now(), Asked: time.Now()}
		name := map[bool]string{false: "plain", true: "events"}[events]
		b.Run(name+"/add", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.svc.add(key, e)
			}
		})
		b.Run(name+"/fallback", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				read, refused := false, ""
				if e, den := c.fallback(key, "u1", &read, &refused); e == nil || den != nil {
					b.Fatal(refused)
				}
			}
		})
	}
}

// BenchmarkParse is the validation of a 2xx answer (the demo identity
// service's context, 186 bytes): content type, UTF-8, duplicate members,
// decoding, compacting for the header.
func BenchmarkParse(b *testing.B) {
	c := &Client{o: Config{MaxBodyBytes: 65536, MaxContextHeaderBytes: 4096, UserIDField: "user_id", Now: time.Now}}
	body := []byte(`{"country":"DE","customer_id":"7d3e2a10-1c4b-4a5e-9f00-3c2b1a000001","resolved_at":"2026-12-03T14:50:03.123456789Z","roles":["customer"],"user_id":"7d3e2a10-1c4b-4a5e-9f00-3c2b1a000001"}` + "\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.parse("application/json", body); err != nil {
			b.Fatal(err)
		}
	}
}
