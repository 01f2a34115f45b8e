package paytoken

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/jwtverify"
	"github.com/subgate/subgate/pkg/payevents"
)

const (
	alice = "7d3e2a10-1c4b-4a5e-9f00-3c2b1a000001"
	bob   = "7d3e2a10-1c4b-4a5e-9f00-3c2b1a000002"
)

func issuer(t testing.TB, key crypto.Signer, now func() time.Time) *Issuer {
	t.Helper()
	i, err := NewIssuer(IssuerOptions{Key: key, Kid: "pay-1", Issuer: "https://payments.example", Audience: "subgate", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return i
}

type fixture struct {
	iss   *Issuer
	revs  *payevents.Revocations
	stale atomic.Bool
	ch    *Decider
}

func newFixture(t testing.TB, key crypto.Signer, required ...string) *fixture {
	t.Helper()
	f := &fixture{iss: issuer(t, key, nil), revs: payevents.NewRevocations()}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(f.iss.JWKS()) }))
	t.Cleanup(srv.Close)
	var err error
	f.ch, err = NewDecider(Config{
		Config:               jwtverify.Config{JWKSURL: srv.URL, Issuers: []string{"https://payments.example"}, Audiences: []string{"subgate"}, CacheSize: 64},
		LeewaySeconds:        5,
		RequiredEntitlements: required, RetryAfterSeconds: 1,
	}, f.revs, f.stale.Load)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func ecKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func wantCode(t *testing.T, d *denial.Denial, code denial.Code) {
	t.Helper()
	if d == nil || d.Code != code {
		t.Fatalf("denial = %+v, want %s", d, code)
	}
}

func TestIssueAndCheckRoundTrip(t *testing.T) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for name, key := range map[string]crypto.Signer{"ES256": ecKey(t), "EdDSA": ed} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, key, "coach")
			tok, err := f.iss.Issue(alice, []string{"coach", "nutrition"})
			if err != nil {
				t.Fatal(err)
			}
			if tok.ExpiresAt.Sub(tok.IssuedAt) != DefaultTTL || tok.ID == "" {
				t.Fatalf("issued %+v", tok)
			}
			res, den := f.ch.verify(tok.Token, alice)
			if den != nil || res.TokenID != tok.ID {
				t.Fatalf("check: %+v %v", res, den)
			}
		})
	}
}

func TestEveryDenial(t *testing.T) {
	f := newFixture(t, ecKey(t), "coach")
	good, _ := f.iss.Issue(alice, []string{"coach"})
	noCoach, _ := f.iss.Issue(alice, []string{"nutrition"})
	expiredIss := issuer(t, f.iss.o.Key, func() time.Time { return time.Now().Add(-time.Hour) })
	expired, _ := expiredIss.Issue(alice, []string{"coach"})
	forger := issuer(t, ecKey(t), nil)
	forged, _ := forger.Issue(alice, []string{"coach"})

	_, d := f.ch.verify("", alice)
	wantCode(t, d, denial.PaymentTokenMissing)
	_, d = f.ch.verify("garbage", alice)
	wantCode(t, d, denial.PaymentTokenInvalid)
	_, d = f.ch.verify(forged.Token, alice) // same kid, other key
	wantCode(t, d, denial.PaymentTokenInvalid)
	_, d = f.ch.verify(expired.Token, alice)
	wantCode(t, d, denial.PaymentTokenExpired)
	// A token of customer A presented with B's JWT.
	_, d = f.ch.verify(good.Token, bob)
	wantCode(t, d, denial.PaymentTokenCustomerMismatch)
	_, d = f.ch.verify(noCoach.Token, alice)
	wantCode(t, d, denial.EntitlementMissing)

	f.stale.Store(true)
	_, d = f.ch.verify(good.Token, alice)
	wantCode(t, d, denial.RevocationStateStale)
	if d.Status != 503 || d.RetryAfter != 1 {
		t.Fatalf("%+v", d)
	}
	f.stale.Store(false)

	f.revs.Apply(payevents.Event{Type: payevents.Cancellation, CustomerID: alice, At: time.Now()})
	_, d = f.ch.verify(good.Token, alice)
	wantCode(t, d, denial.PaymentTokenRevoked)
	// The cached verification does not bypass revocation.
	_, d = f.ch.verify(good.Token, alice)
	wantCode(t, d, denial.PaymentTokenRevoked)

	// Reactivation: a token issued in a later second is accepted.
	later := issuer(t, f.iss.o.Key, func() time.Time { return time.Now().Add(2 * time.Second) })
	fresh, _ := later.Issue(alice, []string{"coach"})
	f.revs.Apply(payevents.Event{Type: payevents.Reactivation, CustomerID: alice, At: time.Now().Add(time.Second)})
	if _, d := f.ch.verify(fresh.Token, alice); d != nil {
		t.Fatalf("token after reactivation refused: %v", d)
	}
}

func TestKeysUnavailableIs503(t *testing.T) {
	ch, err := NewDecider(Config{Config: jwtverify.Config{JWKSURL: "http://127.0.0.1:1/jwks", JWKSTimeoutMs: 100}, RetryAfterSeconds: 2},
		payevents.NewRevocations(), func() bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := issuer(t, ecKey(t), nil).Issue(alice, nil)
	_, d := ch.verify(tok.Token, alice)
	wantCode(t, d, denial.KeysUnavailable)
}

func TestIssuerAndCheckerOptions(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for name, o := range map[string]IssuerOptions{
		"P-384":        {Key: p384, Kid: "k", Issuer: "i", Audience: "a"},
		"no kid":       {Key: ecKey(t), Issuer: "i", Audience: "a"},
		"negative ttl": {Key: ecKey(t), Kid: "k", Issuer: "i", Audience: "a", TTL: -time.Second},
		"sub-second":   {Key: ecKey(t), Kid: "k", Issuer: "i", Audience: "a", TTL: time.Millisecond},
	} {
		if _, err := NewIssuer(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := issuer(t, ecKey(t), nil).Issue("", nil); err == nil {
		t.Error("empty customer accepted")
	}
	if _, err := NewDecider(Config{Config: jwtverify.Config{JWKSURL: "http://x"}}, nil, nil); err == nil || !strings.Contains(err.Error(), "revocation") {
		t.Errorf("checker without revocations: %v", err)
	}
}

// A payment-token header sent twice is refused: the gateway would check one
// while the upstream might read the other.
func TestTokenFromRefusesSeveralHeaders(t *testing.T) {
	f := newFixture(t, ecKey(t))
	if tok, d := f.ch.TokenFrom(map[string][]string{"x-payment-token": {"a"}}); d != nil || tok != "a" {
		t.Fatalf("one header: %q %v", tok, d)
	}
	if tok, d := f.ch.TokenFrom(map[string][]string{}); d != nil || tok != "" {
		t.Fatalf("none: %q %v", tok, d)
	}
	if _, d := f.ch.TokenFrom(map[string][]string{"x-payment-token": {"a", "b"}}); d == nil || d.Code != denial.PaymentTokenInvalid {
		t.Fatalf("two headers: %v", d)
	}
}
