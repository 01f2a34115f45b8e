package paytoken

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"slices"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/subgate/subgate/pkg/jwtverify"
	"github.com/subgate/subgate/pkg/payevents"
)

// FuzzDecide feeds arbitrary payment-access-tokens to the decision for
// alice: no input may panic, and an allow only ever goes to a token that
// names alice and grants the required entitlement. The key
// and the clock are fixed so checked-in corpus entries verify on every run.
func FuzzDecide(f *testing.F) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	key := ed25519.NewKeyFromSeed([]byte("subgate-fuzz-only-ed25519-seed!!"))
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		f.Fatal(err)
	}
	revs := payevents.NewRevocations()
	d, err := NewDecider(Config{
		Config: jwtverify.Config{Keys: []jwtverify.Key{{Kid: "pay-1", Algorithm: "EdDSA",
			PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}},
			Issuers: []string{"https://payments.example"}, Audiences: []string{"subgate"}, Now: clock},
		RequiredEntitlements: []string{"premium"},
	}, revs, func() bool { return false })
	if err != nil {
		f.Fatal(err)
	}
	iss, err := NewIssuer(IssuerOptions{Key: key, Kid: "pay-1", Issuer: "https://payments.example", Audience: "subgate", Now: clock})
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range []struct {
		who   string
		grant []string
	}{{alice, []string{"premium"}}, {alice, []string{"basic"}}, {bob, []string{"premium"}}} {
		tok, err := iss.Issue(c.who, c.grant)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok.Token)
		if _, deny := d.verify(tok.Token, alice); (deny == nil) != (c.who == alice && c.grant[0] == "premium") {
			f.Fatalf("seed for %s granting %v: denial %v", c.who, c.grant, deny)
		}
	}
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		if _, deny := d.verify(tok, alice); deny != nil {
			return
		}
		var mc jwt.MapClaims
		if _, _, err := jwt.NewParser().ParseUnverified(tok, &mc); err != nil {
			t.Fatalf("allowed a token that does not parse: %v", err)
		}
		granted, _ := entitlements(mc[EntitlementsClaim])
		if mc["sub"] != alice || !slices.Contains(granted, "premium") {
			t.Fatalf("allowed a token for %v granting %v", mc["sub"], mc[EntitlementsClaim])
		}
	})
}
