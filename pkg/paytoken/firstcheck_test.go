package paytoken

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/jwtverify"
	"github.com/subgate/subgate/pkg/payevents"
	"github.com/subgate/subgate/pkg/redistest"
)

// startScene is what a plugin server meets at a start: a stream that
// already holds a cancellation of alice (published a minute ago, after her
// token was issued) and a token of bob's that nothing revokes.
type startScene struct {
	key      *ecdsa.PrivateKey
	addr     string
	aliceOld string // issued before alice's cancellation: revoked
	bobGood  string
}

func newStartScene(tb testing.TB) *startScene {
	tb.Helper()
	srv := redistest.Start(tb)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	pub, _ := payevents.NewPublisher(rdb, "", time.Hour)
	now := time.Now()
	if _, err := pub.Publish(context.Background(), payevents.Event{Type: payevents.Cancellation, CustomerID: alice, At: now.Add(-time.Minute)}); err != nil {
		tb.Fatal(err)
	}
	s := &startScene{key: ecKey(tb), addr: srv.Addr}
	old, err := issuer(tb, s.key, func() time.Time { return now.Add(-2 * time.Minute) }).Issue(alice, []string{"coach"})
	if err != nil {
		tb.Fatal(err)
	}
	good, _ := issuer(tb, s.key, nil).Issue(bob, []string{"coach"})
	s.aliceOld, s.bobGood = old.Token, good.Token
	return s
}

// start does what the plugin does at instance start (build in
// plugins/payment-token): a new follower with the plugin's default Redis
// timeouts, a checker on it; the follower is started, not waited for.
func (s *startScene) start(tb testing.TB, addr string, firstSync time.Duration) (*Decider, *payevents.Follower) {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond, MaxRetries: 1})
	f := payevents.NewFollower(rdb, payevents.FollowerOptions{Window: DefaultTTL + 5*time.Second, Block: 50 * time.Millisecond, FirstSync: firstSync})
	der, _ := x509.MarshalPKIXPublicKey(&s.key.PublicKey)
	ch, err := NewDecider(Config{
		Config: jwtverify.Config{Keys: []jwtverify.Key{{Kid: "pay-1", Algorithm: "ES256",
			PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}},
			Issuers: []string{"https://payments.example"}, Audiences: []string{"subgate"}, CacheSize: 64},
		LeewaySeconds: 5, RequiredEntitlements: []string{"coach"}, RetryAfterSeconds: 1,
	}, f.Revocations(), payevents.Bound{F: f, After: 10 * time.Second}.Stale)
	if err != nil {
		tb.Fatal(err)
	}
	f.Start()
	tb.Cleanup(func() { f.Stop(); rdb.Close() })
	return ch, f
}

func codeOf(d *denial.Denial) denial.Code {
	if d == nil {
		return "allow"
	}
	return d.Code
}

// TestFirstCheckAfterStart: the very first check after a start answers as
// a later one would: allow for a valid token, revoked for a token whose
// customer was cancelled before the start. Before the fix both were 503
// revocation_state_stale.
func TestFirstCheckAfterStart(t *testing.T) {
	s := newStartScene(t)
	for _, tc := range []struct {
		name, token, customer string
		want                  denial.Code
	}{
		{"valid token", s.bobGood, bob, "allow"},
		{"cancelled before the start", s.aliceOld, alice, denial.PaymentTokenRevoked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch, _ := s.start(t, s.addr, 0)
			_, d := ch.verify(tc.token, tc.customer)
			if got := codeOf(d); got != tc.want {
				t.Fatalf("first check: %s, want %s", got, tc.want)
			}
		})
	}
}

// TestConcurrentFirstChecks: 32 first checks arriving together right after
// a start (Kong's requests on several connections) all get the right answer.
func TestConcurrentFirstChecks(t *testing.T) {
	s := newStartScene(t)
	ch, _ := s.start(t, s.addr, 0)
	got := make([]denial.Code, 32)
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() {
			tok, cust := s.bobGood, bob
			if i%2 == 1 {
				tok, cust = s.aliceOld, alice
			}
			_, d := ch.verify(tok, cust)
			got[i] = codeOf(d)
		})
	}
	wg.Wait()
	for i, c := range got {
		want := denial.Code("allow")
		if i%2 == 1 {
			want = denial.PaymentTokenRevoked
		}
		if c != want {
			t.Errorf("check %d: %s, want %s", i, c, want)
		}
	}
}

// TestFirstCheckRedisUnreachable: with Redis gone at the start, the first
// check fails closed with 503 revocation_state_stale once the first-sync
// bound passes, never an allow; a token already cancelled is no exception.
func TestFirstCheckRedisUnreachable(t *testing.T) {
	s := newStartScene(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := l.Addr().String()
	l.Close()
	const firstSync = 300 * time.Millisecond
	ch, _ := s.start(t, gone, firstSync)
	start := time.Now()
	_, d := ch.verify(s.bobGood, bob)
	took := time.Since(start)
	if codeOf(d) != denial.RevocationStateStale || d.Status != 503 {
		t.Fatalf("Redis unreachable: %s (%+v), want 503 revocation_state_stale", codeOf(d), d)
	}
	if took > firstSync+2*time.Second {
		t.Fatalf("first check took %v, bound %v", took, firstSync)
	}
	if _, d := ch.verify(s.aliceOld, alice); codeOf(d) != denial.RevocationStateStale {
		t.Fatalf("after the bound: %s", codeOf(d))
	}
}

// BenchmarkFirstCheckAfterStart measures, per op, a start as the plugin
// does it (new follower and client, Start) followed at once by the first
// check of a valid token, against a real redis-server on loopback whose
// stream holds 100 events: the first request's cost of a start. p50/p99
// are reported next to ns/op.
func BenchmarkFirstCheckAfterStart(b *testing.B) {
	s := newStartScene(b)
	rdb := redis.NewClient(&redis.Options{Addr: s.addr})
	defer rdb.Close()
	pub, _ := payevents.NewPublisher(rdb, "", time.Hour)
	for range 99 {
		if _, err := pub.Publish(context.Background(), payevents.Event{Type: payevents.Block, CustomerID: "other", At: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	var lat []time.Duration
	var stopping sync.WaitGroup // a Stop waits out the XREAD's BLOCK (~100 ms at Redis' timer resolution)
	defer stopping.Wait()
	for b.Loop() {
		b.StopTimer()
		rdb := redis.NewClient(&redis.Options{Addr: s.addr, DialTimeout: 200 * time.Millisecond, ReadTimeout: 100 * time.Millisecond, MaxRetries: 1})
		f := payevents.NewFollower(rdb, payevents.FollowerOptions{Window: DefaultTTL, Block: 20 * time.Millisecond})
		der, _ := x509.MarshalPKIXPublicKey(&s.key.PublicKey)
		ch, err := NewDecider(Config{
			Config: jwtverify.Config{Keys: []jwtverify.Key{{Kid: "pay-1", Algorithm: "ES256",
				PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}},
				Issuers: []string{"https://payments.example"}, Audiences: []string{"subgate"}},
			RequiredEntitlements: []string{"coach"},
		}, f.Revocations(), payevents.Bound{F: f, After: 10 * time.Second}.Stale)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t0 := time.Now()
		f.Start()
		_, d := ch.verify(s.bobGood, bob)
		lat = append(lat, time.Since(t0))
		b.StopTimer()
		if d != nil {
			b.Fatalf("first check: %s", d.Code)
		}
		stopping.Go(func() { f.Stop(); rdb.Close() })
		b.StartTimer()
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}
