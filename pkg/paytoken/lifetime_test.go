package paytoken

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/jwtverify"
	"github.com/subgate/subgate/pkg/payevents"
	"github.com/subgate/subgate/pkg/redistest"
)

// clock is a settable time for the issuer, the verifier and the follower.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }
func (c *clock) at(d time.Duration) func() time.Time {
	return func() time.Time { return c.Now().Add(d) }
}

// A token lives no longer than max_token_lifetime_seconds (exp - iat), the
// time revocations are kept (plus leeway), and must carry iat: otherwise a
// revocation could be forgotten while a token it covers still verifies.
func TestLifetimeBound(t *testing.T) {
	key := ecKey(t)
	iss := issuer(t, key, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(iss.JWKS()) }))
	t.Cleanup(srv.Close)
	d, err := NewDecider(Config{Config: jwtverify.Config{JWKSURL: srv.URL}, MaxTokenLifetimeSeconds: 600, LeewaySeconds: 5},
		payevents.NewRevocations(), func() bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	sign := func(claims jwt.MapClaims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
		tok.Header["kid"], tok.Header["typ"] = "pay-1", jwtverify.PaymentType
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	now := time.Now().Unix()
	claims := func(lifetime int64, iat bool) jwt.MapClaims {
		c := jwt.MapClaims{"sub": alice, "jti": "j", "exp": now + lifetime, "entitlements": []string{"coach"}}
		if iat {
			c["iat"] = now
		}
		return c
	}
	if _, den := d.verify(sign(claims(600, true)), alice); den != nil {
		t.Fatalf("exactly the bound: %v", den)
	}
	_, den := d.verify(sign(claims(601, true)), alice)
	wantCode(t, den, denial.PaymentTokenInvalid) // the issuer's fault: a fresh token of the same lifetime fails too
	_, den = d.verify(sign(claims(60, false)), alice)
	wantCode(t, den, denial.PaymentTokenInvalid)

	// The issuer keeps within the bound it shares a default with: exp - iat
	// is exactly its TTL, whatever the sub-second part of its clock or TTL.
	for _, o := range []IssuerOptions{{}, {TTL: 600*time.Second + 999*time.Millisecond}} {
		o.Key, o.Kid, o.Issuer, o.Audience = key, "pay-1", "i", "a"
		o.Now = func() time.Time { return time.Unix(now, 999_999_999) }
		i, err := NewIssuer(o)
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := i.Issue(alice, nil)
		want := DefaultTTL
		if o.TTL != 0 {
			want = 600 * time.Second
		}
		if got := tok.ExpiresAt.Sub(tok.IssuedAt); got != want {
			t.Errorf("TTL %v: exp - iat = %v, want %v", o.TTL, got, want)
		}
	}
	def, err := NewDecider(Config{Config: jwtverify.Config{JWKSURL: srv.URL}}, payevents.NewRevocations(), func() bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := iss.Issue(alice, nil) // default TTL
	if _, den := def.verify(tok.Token, alice); den != nil {
		t.Fatalf("the default issuer's token under the default bound: %v", den)
	}
}

// Across the retention boundary, on a real follower of a real stream: a
// revocation is in force while a token it covers can live; past the window
// the follower has pruned it, every token it covered and the bound admits
// has expired, and a longer-lived one it would have covered is refused by
// the lifetime rule, not let through.
func TestRevocationOutlivesEveryTokenItCovers(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	const lifetime, leeway = 60 * time.Second, 5 * time.Second
	window := lifetime + leeway
	clk := &clock{now: time.Now()}
	key := ecKey(t)
	issuing := func(ttl time.Duration) *Issuer { // tokens issued 10 s before the revocation
		i, err := NewIssuer(IssuerOptions{Key: key, Kid: "pay-1", Issuer: "https://payments.example", Audience: "subgate",
			TTL: ttl, Now: clk.at(-10 * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	iss, long := issuing(lifetime), issuing(10*lifetime) // within the bound, past it
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(iss.JWKS()) }))
	t.Cleanup(jwks.Close)

	pub, _ := payevents.NewPublisher(rdb, "", window)
	if _, err := pub.Publish(context.Background(), payevents.Event{Type: payevents.Cancellation, CustomerID: alice, At: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	f := payevents.NewFollower(redis.NewClient(&redis.Options{Addr: srv.Addr}),
		payevents.FollowerOptions{Window: window, Block: 20 * time.Millisecond, Now: clk.Now})
	f.Start()
	t.Cleanup(f.Stop)
	stale := payevents.Bound{F: f, After: 10 * time.Second}
	d, err := NewDecider(Config{Config: jwtverify.Config{JWKSURL: jwks.URL, Now: clk.Now},
		MaxTokenLifetimeSeconds: int(lifetime / time.Second), LeewaySeconds: int(leeway / time.Second)}, f.Revocations(), stale.Stale)
	if err != nil {
		t.Fatal(err)
	}
	short, _ := iss.Issue(alice, nil)
	longTok, _ := long.Issue(alice, nil)

	clk.advance(time.Second)
	_, den := d.verify(short.Token, alice)
	wantCode(t, den, denial.PaymentTokenRevoked)
	_, den = d.verify(longTok.Token, alice)
	wantCode(t, den, denial.PaymentTokenInvalid)

	// Past the window (and the follower's once-a-minute prune).
	clk.advance(window + 2*time.Minute)
	deadline := time.Now().Add(5 * time.Second)
	for f.Revocations().Len() != 0 || stale.Stale() {
		if time.Now().After(deadline) {
			t.Fatalf("the follower kept the revocation past the window (%d kept, stale %v)", f.Revocations().Len(), stale.Stale())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if f.Revocations().Revoked(alice, longTok.IssuedAt) {
		t.Fatal("the revocation is still there")
	}
	if !clk.Now().Before(longTok.ExpiresAt) {
		t.Fatal("the long-lived token expired: the test proves nothing")
	}
	_, den = d.verify(short.Token, alice)
	wantCode(t, den, denial.PaymentTokenExpired) // every token the bound admits has expired
	_, den = d.verify(longTok.Token, alice)
	wantCode(t, den, denial.PaymentTokenInvalid) // unexpired, uncovered now: only the lifetime rule refuses it
}
