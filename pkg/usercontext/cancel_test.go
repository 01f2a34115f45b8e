package usercontext

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// pkg/chain cancels a lookup an earlier check made useless. The request in
// flight is left to finish, so its keep-alive connection serves the next
// lookup (aborting it would close the connection while the identity service
// works all the same); no retry starts after the cancellation.
func TestCancelledLookupKeepsItsConnectionAndStopsRetrying(t *testing.T) {
	var conns atomic.Int64
	slow := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"user_id":"u1"}`))
	}))
	slow.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	slow.Start()
	t.Cleanup(slow.Close)
	c := client(t, slow.URL, func(o *Config) { o.AttemptTimeoutMs = 1000 })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = c.Lookup(ctx, creds)
	}()
	time.Sleep(30 * time.Millisecond) // the request is at the identity service
	cancel()
	<-done
	if _, den := c.Lookup(context.Background(), creds); den != nil {
		t.Fatal(den.Code)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections to the identity service, want 1 (the cancelled lookup's was reused)", n)
	}

	// 503s retry; a cancellation during the backoff ends the lookup.
	id := newIdentity(t, answer{status: 503})
	c = client(t, id.srv.URL, func(o *Config) { o.BackoffMs = 200; o.MaxAttempts = 5; o.DeadlineMs = 5000 })
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	before := lookups.Value("cancelled")
	_, den := c.Lookup(ctx, map[string]string{"Authorization": "Bearer other"})
	if den == nil || id.hits.Load() > 2 {
		t.Fatalf("denial %+v after %d attempts, want a denial after at most 2", den, id.hits.Load())
	}
	if got := lookups.Value("cancelled") - before; got != 1 {
		t.Errorf("subgate_identity_lookups_total{outcome=cancelled} rose by %v, want 1", got)
	}
}
