package main

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/payevents"
	"github.com/subgate/subgate/pkg/redistest"
)

// TestFirstRequestAfterInstanceStart: Kong starts an instance inside the
// first request that reaches it and runs the access event right away. That
// request gets the answer a later one would (each case below is the first
// request on a follower of its own: a new stream setting is a new
// follower), and with Redis gone it fails closed within the first-sync
// bound.
func TestFirstRequestAfterInstanceStart(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	pub, _ := payevents.NewPublisher(rdb, "first-revoked", time.Hour)
	now := time.Now()
	if _, err := pub.Publish(context.Background(), payevents.Event{Type: payevents.Cancellation, CustomerID: alice, At: now.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	old, _ := issuer(t, now.Add(-2*time.Minute)).Issue(alice, []string{"coach"})
	good, _ := issuer(t, now).Issue(bob, []string{"coach"})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := l.Addr().String()
	l.Close()

	for _, tc := range []struct {
		name, addr, stream, customer, token string
		status                              int
		code                                string
	}{
		{"valid token", srv.Addr, "first-valid", bob, good.Token, 200, ""},
		{"cancelled before the start", srv.Addr, "first-revoked", alice, old.Token, 401, "payment_token_revoked"},
		{"Redis gone", gone, "first-gone", bob, good.Token, 503, "revocation_state_stale"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			c := kongConfig(t, tc.addr, map[string]any{"events_stream": tc.stream})
			st, code := run(t, c, tc.customer, tc.token)
			took := time.Since(start)
			t.Logf("instance start + first request: %v", took)
			if st != tc.status || code != tc.code {
				t.Fatalf("first request: %d %s, want %d %s", st, code, tc.status, tc.code)
			}
			if took > payevents.DefaultFirstSync+2*time.Second {
				t.Fatalf("first request took %v; the first-sync bound is %v", took, payevents.DefaultFirstSync)
			}
		})
	}
}
