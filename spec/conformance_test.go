package spec

import (
	"fmt"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/subgate/subgate/pkg/jwtverify"
)

// Rows of pkg/jwtverify/testdata/conformance.md that only the binary in
// the stand-in can show: what reaches the client and what is read.
func conformanceGateway(t *testing.T, kong string) *observed {
	return observeEchoOn(t, kong, fmt.Sprintf(`      - name: r
        paths: [/r]
        plugins:
          - name: jwt-claims
            config: {keys: [{kid: hs, algorithm: HS256, secret: %q}]}
`, obsSecret), "jwt-claims")
}

// RFC 6750 2.2 and 2.3 are MAYs subgate does not take: a token in a form
// body or in the query string is not read, so the request has no token;
// the challenge then carries no error information (3.1).
func TestRFC6750BodyAndQueryTokensIgnored(t *testing.T) {
	eachGateway(t, rfc6750BodyAndQueryTokensIgnored)
}

func rfc6750BodyAndQueryTokensIgnored(t *testing.T, kong string) {
	o := conformanceGateway(t, kong)
	tok := obsToken(t, time.Hour)
	for name, req := range map[string]func() *httptest.ResponseRecorder{
		"form body": func() *httptest.ResponseRecorder {
			r := httptest.NewRequest("POST", "/r", strings.NewReader(url.Values{"access_token": {tok}}.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			rec := httptest.NewRecorder()
			o.ServeHTTP(rec, r)
			return rec
		},
		"query string": func() *httptest.ResponseRecorder {
			rec := httptest.NewRecorder()
			o.ServeHTTP(rec, httptest.NewRequest("GET", "/r?access_token="+tok, nil))
			return rec
		},
	} {
		rec := req()
		if rec.Code != 401 || !strings.Contains(rec.Body.String(), `"code":"token_missing"`) {
			t.Fatalf("%s: %d %s", name, rec.Code, rec.Body)
		}
		if got := rec.Header().Get("WWW-Authenticate"); got != `Bearer realm="subgate"` {
			t.Fatalf("%s: WWW-Authenticate %q", name, got)
		}
	}
}

// RFC 6750 3 and RFC 7235 3.1 as the client sees them: a refused token's
// 401 carries one Bearer challenge with error="invalid_token".
func TestRFC6750ChallengeReachesTheClient(t *testing.T) {
	eachGateway(t, rfc6750ChallengeReachesTheClient)
}

func rfc6750ChallengeReachesTheClient(t *testing.T, kong string) {
	o := conformanceGateway(t, kong)
	rec, _ := o.do(t, "/r", obsToken(t, -time.Hour))
	www := rec.Result().Header.Values("WWW-Authenticate")
	if rec.Code != 401 || len(www) != 1 || !strings.HasPrefix(www[0], `Bearer error="invalid_token", error_description="`) {
		t.Fatalf("%d %q", rec.Code, www)
	}
	if rec, _ := o.do(t, "/r", obsToken(t, time.Hour)); rec.Code != 200 || rec.Header().Get("WWW-Authenticate") != "" {
		t.Fatalf("allowed: %d %q", rec.Code, rec.Header().Get("WWW-Authenticate"))
	}
}

// RFC 8725 3.12 through the binary: a payment-access-token (typ
// subgate-payment+jwt) is refused as a bearer token even when the same
// key signed it.
func TestRFC8725PaymentTokenRefusedByJWTClaims(t *testing.T) {
	eachGateway(t, rfc8725PaymentTokenRefusedByJWTClaims)
}

func rfc8725PaymentTokenRefusedByJWTClaims(t *testing.T, kong string) {
	o := conformanceGateway(t, kong)
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": alice, "exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"], tok.Header["typ"] = "hs", jwtverify.PaymentType
	s, err := tok.SignedString([]byte(obsSecret))
	if err != nil {
		t.Fatal(err)
	}
	if rec, _ := o.do(t, "/r", s); rec.Code != 401 || !strings.Contains(rec.Body.String(), `"code":"token_malformed"`) {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}
