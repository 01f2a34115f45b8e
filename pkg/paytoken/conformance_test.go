package paytoken

// The payment token's own rows of pkg/jwtverify/testdata/conformance.md.
// Every JWS/JWT row holds for it too: it verifies through pkg/jwtverify.

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/jwtverify"
)

// forge signs claims with the fixture's own issuer key, as the issuer
// would, but with the header and claims the test chooses.
func (f *fixture) forge(t *testing.T, typ any, mod func(jwt.MapClaims)) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{"sub": alice, EntitlementsClaim: []string{"coach"}, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		"jti": "j1", "iss": "https://payments.example", "aud": "subgate"}
	if mod != nil {
		mod(c)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	tok.Header["kid"] = "pay-1"
	if typ != nil {
		tok.Header["typ"] = typ
	}
	s, err := tok.SignedString(f.iss.o.Key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// RFC 8725 3.11 and 3.12: payment tokens are explicitly typed; the
// checker requires the type, and a bearer verifier (jwt-claims: no Type)
// refuses it, even with the payment issuer's keys.
func TestConformancePaymentTokenIsExplicitlyTyped(t *testing.T) {
	f := newFixture(t, ecKey(t), "coach")
	issued, _ := f.iss.Issue(alice, []string{"coach"})
	if tok, _, err := jwt.NewParser().ParseUnverified(issued.Token, jwt.MapClaims{}); err != nil || tok.Header["typ"] != jwtverify.PaymentType {
		t.Fatalf("issued header %v (%v)", tok.Header, err)
	}
	if _, d := f.ch.verify(f.forge(t, "application/"+jwtverify.PaymentType, nil), alice); d != nil {
		t.Fatalf("the long form of the type refused: %v", d)
	}
	for name, typ := range map[string]any{"no typ": nil, "typ JWT": "JWT", "typ at+jwt": "at+jwt"} {
		_, d := f.ch.verify(f.forge(t, typ, nil), alice)
		if d == nil || d.Code != denial.PaymentTokenInvalid {
			t.Errorf("%s: %v", name, d)
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(f.iss.JWKS()) }))
	defer srv.Close()
	bearer, err := jwtverify.New(jwtverify.Config{JWKSURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bearer.Verify(issued.Token); err == nil || jwtverify.KindOf(err) != jwtverify.Malformed { // KindOf(nil) is Malformed
		t.Fatalf("a bearer verifier with the payment keys: %v", err)
	}
}

// The payment token binds a customer: its sub must be exactly the
// customer jwt-claims verified (byte for byte, compared in constant time).
func TestConformancePaymentCustomerBinding(t *testing.T) {
	f := newFixture(t, ecKey(t))
	tok := f.forge(t, jwtverify.PaymentType, nil)
	if _, d := f.ch.verify(tok, alice); d != nil {
		t.Fatalf("own token: %v", d)
	}
	for _, customer := range []string{bob, "", alice[:len(alice)-1], alice + " ", "7D3E2A10-1C4B-4A5E-9F00-3C2B1A000001"} {
		_, d := f.ch.verify(tok, customer)
		wantCode(t, d, denial.PaymentTokenCustomerMismatch)
	}
	_, d := f.ch.verify(f.forge(t, jwtverify.PaymentType, func(c jwt.MapClaims) { c["sub"] = 7 }), "7")
	wantCode(t, d, denial.PaymentTokenInvalid)
}

// Entitlements are an array of strings; every required one must be in it.
// Another shape is not a token the issuer wrote: refused whole, not read
// in part.
func TestConformancePaymentEntitlementTypes(t *testing.T) {
	f := newFixture(t, ecKey(t), "coach")
	with := func(v any) string {
		return f.forge(t, jwtverify.PaymentType, func(c jwt.MapClaims) { c[EntitlementsClaim] = v })
	}
	for name, v := range map[string]any{"a string": "coach", "a number in the array": []any{1, "coach"}, "an object": map[string]any{"coach": true}} {
		_, d := f.ch.verify(with(v), alice)
		if d == nil || d.Code != denial.PaymentTokenInvalid {
			t.Errorf("%s: %v", name, d)
		}
	}
	for name, v := range map[string]any{"absent": nil, "empty": []string{}, "another": []string{"nutrition"}, "case": []string{"Coach"}} {
		_, d := f.ch.verify(with(v), alice)
		if d == nil || d.Code != denial.EntitlementMissing {
			t.Errorf("%s: %v", name, d)
		}
	}
	if _, d := f.ch.verify(with([]string{"nutrition", "coach"}), alice); d != nil {
		t.Fatal(d)
	}
}

// The claims the issuer always writes (sub, iat, jti, exp) are required:
// iat is what revocation compares, jti what the audit line names.
func TestConformancePaymentRequiredClaims(t *testing.T) {
	f := newFixture(t, ecKey(t))
	for _, name := range []string{"sub", "iat", "jti", "exp"} {
		_, d := f.ch.verify(f.forge(t, jwtverify.PaymentType, func(c jwt.MapClaims) { delete(c, name) }), alice)
		if d == nil || d.Code != denial.PaymentTokenInvalid {
			t.Errorf("without %s: %v", name, d)
		}
	}
}
