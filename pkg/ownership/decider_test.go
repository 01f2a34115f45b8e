package ownership

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/claims"
	"github.com/subgate/subgate/pkg/denial"
)

// alice and bob are declared in ownership_test.go.

func seed(t testing.TB, rdb redis.UniversalClient, country string, id int64, customer string) {
	t.Helper()
	u, err := ParseUUID(customer)
	if err != nil {
		t.Fatal(err)
	}
	if err := NewStore(rdb, "").Put(context.Background(), country, id, u); err != nil {
		t.Fatal(err)
	}
}

func setup(t *testing.T, cfg Config) (*miniredis.Miniredis, redis.UniversalClient, *Decider) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1, ReadTimeout: 100 * time.Millisecond, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	if cfg.PathPatterns == nil {
		cfg.PathPatterns = []string{"/subscriptions/{subscription_id}"}
	}
	if cfg.TimeoutMs == 0 {
		cfg.TimeoutMs = 250
	}
	cfg.RetryAfterSeconds = 1
	d, err := NewWith(cfg, rdb)
	if err != nil {
		t.Fatal(err)
	}
	seed(t, rdb, "DE", 1234, alice)
	seed(t, rdb, "FR", 1234, bob)
	return m, rdb, d
}

func who(customer, country string) *claims.Verified {
	return &claims.Verified{CustomerID: customer, Country: country, Claims: map[string]any{"cid": customer, "ctry": country}}
}

func wantCode(t *testing.T, d *denial.Denial, code denial.Code) {
	t.Helper()
	if d == nil || d.Code != code {
		t.Fatalf("denial = %+v, want %s", d, code)
	}
}

func TestOwnerAllowedOthersForbiddenAlike(t *testing.T) {
	_, _, d := setup(t, Config{})
	ctx := context.Background()
	res, den := d.lookup(ctx, "/subscriptions/1234", who(alice, "DE"))
	if den != nil || res.SubscriptionID != 1234 || res.Country != "DE" {
		t.Fatalf("owner denied: %+v %+v", res, den)
	}
	_, notYours := d.lookup(ctx, "/subscriptions/1234", who(bob, "DE"))
	_, unknown := d.lookup(ctx, "/subscriptions/999999", who(bob, "DE"))
	wantCode(t, notYours, denial.SubscriptionForbidden)
	wantCode(t, unknown, denial.SubscriptionForbidden)
	if string(notYours.Body("x")) != string(unknown.Body("x")) || notYours.Status != unknown.Status {
		t.Fatal("foreign and unknown subscriptions are distinguishable")
	}
	// Same id in another country belongs to someone else.
	_, other := d.lookup(ctx, "/subscriptions/1234", who(alice, "FR"))
	wantCode(t, other, denial.SubscriptionForbidden)
	// Country claim in lower case is normalised.
	if _, den := d.lookup(ctx, "/subscriptions/1234", who(alice, "de")); den != nil {
		t.Fatal(den)
	}
}

func TestOddPathSpellingsNeverReachAnotherSubscription(t *testing.T) {
	_, _, d := setup(t, Config{})
	ctx := context.Background()
	invalid := []string{
		"/subscriptions/",
		"/subscriptions",
		"/subscriptions/abc",
		"/subscriptions/01234", // leading zero: one id, one spelling
		"/subscriptions/+1234",
		"/subscriptions/1234%2F5678", // encoded slash stays in the segment (Kong keeps %2F encoded)
		"/subscriptions/1234;x=1",
		"/subscriptions/12 34",
		"/subscriptions/١٢٣٤", // non-ASCII digits
		"/subscriptions/99999999999999999999",
		"/subscriptions//1234",     // not normalized: refused
		"/subscriptions/5/../1234", // not normalized: refused
		"/subscriptions/./1234",
	}
	for _, p := range invalid {
		_, den := d.lookup(ctx, p, who(alice, "DE"))
		wantCode(t, den, denial.SubscriptionIDInvalid)
	}
	// Trailing slash and deeper paths read the same id.
	for _, p := range []string{"/subscriptions/1234/", "/subscriptions/1234/deliveries/9"} {
		if _, den := d.lookup(ctx, p, who(alice, "DE")); den != nil {
			t.Errorf("%s: %v", p, den)
		}
	}
}

func TestUnusableClaimsOwnNothing(t *testing.T) {
	_, _, d := setup(t, Config{})
	ctx := context.Background()
	_, den := d.lookup(ctx, "/subscriptions/1234", who("not-a-uuid", "DE"))
	wantCode(t, den, denial.SubscriptionForbidden)
	_, den = d.lookup(ctx, "/subscriptions/1234", who(alice, ""))
	wantCode(t, den, denial.SubscriptionForbidden)
}

func TestConfiguredClaimNames(t *testing.T) {
	_, _, d := setup(t, Config{CustomerIDClaim: "cid", CountryClaim: "ctry"})
	v := &claims.Verified{CustomerID: bob, Country: "FR", Claims: map[string]any{"cid": alice, "ctry": "DE"}}
	if _, den := d.lookup(context.Background(), "/subscriptions/1234", v); den != nil {
		t.Fatalf("configured claims not used: %v", den)
	}
}

func TestCountryFromPath(t *testing.T) {
	_, _, d := setup(t, Config{CountrySource: FromPath, PathPatterns: []string{"/{country}/subscriptions/{subscription_id}"}})
	ctx := context.Background()
	if _, den := d.lookup(ctx, "/fr/subscriptions/1234", who(bob, "DE")); den != nil {
		t.Fatalf("path country not used: %v", den)
	}
	_, den := d.lookup(ctx, "/de/subscriptions/1234", who(bob, "FR"))
	wantCode(t, den, denial.SubscriptionForbidden)
	_, den = d.lookup(ctx, "/xyz/subscriptions/1234", who(bob, "FR"))
	wantCode(t, den, denial.SubscriptionIDInvalid)
}

func TestRedisDownOrSlowIs503(t *testing.T) {
	m, _, d := setup(t, Config{TimeoutMs: 50})
	m.SetError("LOADING Redis is loading the dataset in memory")
	_, den := d.lookup(context.Background(), "/subscriptions/1234", who(alice, "DE"))
	wantCode(t, den, denial.OwnershipUnavailable)
	if den.Status != 503 || den.RetryAfter != 1 {
		t.Fatalf("%+v", den)
	}
	m.SetError("")
	m.Close()
	_, den = d.lookup(context.Background(), "/subscriptions/1234", who(alice, "DE"))
	wantCode(t, den, denial.OwnershipUnavailable)
}

func TestPositiveCacheBoundsStaleness(t *testing.T) {
	m, rdb, d := setup(t, Config{CacheTTLSeconds: 1, CacheSize: 10})
	ctx := context.Background()
	if res, den := d.lookup(ctx, "/subscriptions/1234", who(alice, "DE")); den != nil || res.Cached {
		t.Fatalf("first: %+v %v", res, den)
	}
	// Ownership moves to bob; the cache may answer for alice until its TTL.
	seed(t, rdb, "DE", 1234, bob)
	m.Close() // and Redis is down: the cached positive answer still serves
	if res, den := d.lookup(ctx, "/subscriptions/1234", who(alice, "DE")); den != nil || !res.Cached {
		t.Fatalf("cached: %+v %v", res, den)
	}
	time.Sleep(1100 * time.Millisecond)
	_, den := d.lookup(ctx, "/subscriptions/1234", who(alice, "DE"))
	wantCode(t, den, denial.OwnershipUnavailable) // past the TTL the store is asked again
	// Negative answers are never cached.
	_, _, d2 := setup(t, Config{CacheTTLSeconds: 60, CacheSize: 10})
	_, den = d2.lookup(ctx, "/subscriptions/77", who(alice, "DE"))
	wantCode(t, den, denial.SubscriptionForbidden)
}

func TestBadConfig(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	for name, cfg := range map[string]Config{
		"no patterns":      {PathPatterns: []string{}},
		"bad pattern":      {PathPatterns: []string{"/subscriptions/{id}"}},
		"bad source":       {PathPatterns: []string{"/s/{subscription_id}"}, CountrySource: "header"},
		"path w/o country": {PathPatterns: []string{"/s/{subscription_id}"}, CountrySource: FromPath},
		"negative timeout": {PathPatterns: []string{"/s/{subscription_id}"}, TimeoutMs: -1},
		"cache w/o size":   {PathPatterns: []string{"/s/{subscription_id}"}, CacheTTLSeconds: 1, CacheSize: -1},
	} {
		if _, err := NewWith(cfg, rdb); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The first lookup of an instance may also ask a Sentinel and dial Redis:
// until a lookup has had an answer, its deadline has twice the dial timeout
// more; after one, timeout_ms alone. A failed lookup leaves the grace.
func TestFirstLookupMayDial(t *testing.T) {
	m, _, d := setup(t, Config{TimeoutMs: 50})
	d.cfg.Redis.DialTimeoutMs = 200
	if got := d.lookupTimeout(); got != 450*time.Millisecond {
		t.Fatalf("before any answer: %v, want 450ms", got)
	}
	m.SetError("LOADING Redis is loading the dataset in memory")
	d.lookup(context.Background(), "/subscriptions/1234", who(alice, "DE"))
	if got := d.lookupTimeout(); got != 450*time.Millisecond {
		t.Fatalf("after a failed lookup: %v, want the grace still", got)
	}
	m.SetError("")
	if _, den := d.lookup(context.Background(), "/subscriptions/1234", who(alice, "DE")); den != nil {
		t.Fatal(den)
	}
	if got := d.lookupTimeout(); got != 50*time.Millisecond {
		t.Fatalf("after an answer: %v, want timeout_ms", got)
	}
}
