package jwtclaims

// The bearer token's request rows of pkg/jwtverify/testdata/conformance.md
// (RFC 6750, RFC 7235), on the decision; spec/requestshapes_test.go sends
// the same shapes through the binary.

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/jwtverify"
)

const testSecret = "0123456789abcdef0123456789abcdef"

func decider(t *testing.T, c Config) *Decider {
	t.Helper()
	c.Keys = []jwtverify.Key{{Kid: "h1", Algorithm: "HS256", Secret: testSecret}}
	d, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func token(t *testing.T, typ string) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"] = "h1"
	if typ != "" {
		tok.Header["typ"] = typ
	}
	s, err := tok.SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func code(d *denial.Denial) denial.Code {
	if d == nil {
		return ""
	}
	return d.Code
}

// RFC 7235 2.1: the auth-scheme is case-insensitive.
func TestRFC7235SchemeCaseInsensitive(t *testing.T) {
	d, tok := decider(t, Config{}), token(t, "")
	for _, scheme := range []string{"Bearer", "bearer", "BEARER", "bEaReR"} {
		if _, den := d.verify(map[string][]string{"authorization": {scheme + " " + tok}}); den != nil {
			t.Errorf("%s: %v", scheme, den)
		}
	}
}

// RFC 6750 2.1: credentials = "Bearer" 1*SP b64token. No scheme, another
// scheme, a tab, or no token is no bearer token (token_missing); a token
// outside b64token (a space inside, a comma, non-ASCII) is not a JWT.
func TestRFC6750AuthorizationSyntax(t *testing.T) {
	d, tok := decider(t, Config{}), token(t, "")
	for value, want := range map[string]denial.Code{
		"Bearer " + tok:                  "",
		"Bearer   " + tok:                "",
		tok:                              denial.TokenMissing,
		"Basic " + tok:                   denial.TokenMissing,
		"Bearer\t" + tok:                 denial.TokenMissing,
		"Bearer":                         denial.TokenMissing,
		"Bearer ":                        denial.TokenMissing,
		"Bearer " + tok[:10] + " " + tok: denial.TokenMalformed,
		"Bearer " + tok + ",":            denial.TokenMalformed,
		"Bearer " + tok + "é":            denial.TokenMalformed,
		"Bearer " + tok + "==":           denial.TokenMalformed,
	} {
		if _, den := d.verify(map[string][]string{"authorization": {value}}); code(den) != want {
			t.Errorf("%.20q…: %v, want %q", value, den, want)
		}
	}
}

// RFC 6750 3.1 (invalid_request: more than one method or the same
// parameter repeated, SHOULD be 400) is not followed to the letter: a
// repeated token header is refused as token_malformed (401, a challenge),
// and a header and a cookie together are not an error: the header wins
// (the cookie is subgate's option, not an RFC 6750 method).
func TestRFC6750SeveralCredentials(t *testing.T) {
	d, tok := decider(t, Config{TokenCookie: "sid"}), token(t, "")
	_, den := d.verify(map[string][]string{"authorization": {"Bearer " + tok, "Bearer " + tok}})
	if code(den) != denial.TokenMalformed || den.Status != 401 {
		t.Fatalf("two Authorization headers: %v", den)
	}
	if _, den := d.verify(map[string][]string{"authorization": {"Bearer " + tok}, "cookie": {"sid=garbage"}}); den != nil {
		t.Fatalf("header and cookie: %v", den)
	}
}

// RFC 6750 5.3 (bearer tokens in cookies need CSRF precautions): reading a
// cookie is off unless token_cookie is set, and subgate never sets one.
func TestRFC6750CookieOffByDefault(t *testing.T) {
	tok := token(t, "")
	_, den := decider(t, Config{}).verify(map[string][]string{"cookie": {"token=" + tok + "; sid=" + tok + "; jwt=" + tok + "; access_token=" + tok}})
	if code(den) != denial.TokenMissing {
		t.Fatalf("a cookie was read without token_cookie: %v", den)
	}
}

// RFC 7235 4.2: a proxy MUST NOT modify Authorization. By default the
// header reaches the upstream untouched (it is not among the owned
// headers); hide_credentials removes it, the gateway having consumed the
// credential as the origin the client talks to.
func TestRFC7235AuthorizationForwardedUnchanged(t *testing.T) {
	if owned := decider(t, Config{}).Owned(); slices.ContainsFunc(owned, func(h string) bool { return strings.EqualFold(h, "Authorization") }) {
		t.Fatalf("Authorization owned by default: %v", owned)
	}
	if owned := decider(t, Config{HideCredentials: true}).Owned(); !slices.Contains(owned, "Authorization") {
		t.Fatalf("hide_credentials does not remove it: %v", owned)
	}
}

// RFC 8725 3.12 through the bearer plugin's decision: a payment-access-
// token presented as the bearer token is refused, even under the same key.
func TestRFC8725PaymentTokenIsNotABearerToken(t *testing.T) {
	d := decider(t, Config{})
	_, den := d.verify(map[string][]string{"authorization": {"Bearer " + token(t, jwtverify.PaymentType)}})
	if code(den) != denial.TokenMalformed {
		t.Fatalf("payment token as bearer: %v", den)
	}
	if _, den := d.verify(map[string][]string{"authorization": {"Bearer " + token(t, "JWT")}}); den != nil {
		t.Fatalf("typ JWT: %v", den)
	}
}
