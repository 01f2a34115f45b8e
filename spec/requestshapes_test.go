package spec

import (
	"bufio"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/subgate/subgate/pkg/paytoken"
	"github.com/subgate/subgate/pkg/redistest"
)

// Every way a request can carry or hide a bearer token, through the real
// jwt-claims binary, over HTTP as a client sends it: a token header sent
// twice is refused by nginx before any plugin runs (Authorization is one of
// its unique headers), a token cookie set twice by the plugin (the gateway
// would verify one while the upstream might read the other); the scheme is
// case-insensitive (RFC 7235 2.1) and separated by spaces only; a token in
// the query string or the body is ignored (RFC 6750 2.2 and 2.3 are MAYs:
// only the header and the configured cookie are read), so such a request
// has no token.
func TestRequestShapes(t *testing.T) {
	eachGateway(t, requestShapes)
}

func requestShapes(t *testing.T, kong string) {
	o := observeEchoOn(t, kong, fmt.Sprintf(`      - name: header
        paths: [/h]
        plugins:
          - name: jwt-claims
            config: {keys: [{kid: hs, algorithm: HS256, secret: %q}]}
      - name: small
        paths: [/small]
        plugins:
          - name: jwt-claims
            config: {keys: [{kid: hs, algorithm: HS256, secret: %q}], max_token_bytes: 1024}
      - name: cookie
        paths: [/c]
        plugins:
          - name: jwt-claims
            config: {keys: [{kid: hs, algorithm: HS256, secret: %q}], token_cookie: sid}
`, obsSecret, obsSecret, obsSecret), "jwt-claims")
	good, other := obsToken(t, time.Hour), obsToken(t, 2*time.Hour)
	gw := o.URL(t)
	for _, c := range []struct {
		name, path string
		headers    map[string][]string
		status     int
		code       string
	}{
		{"one header", "/h", map[string][]string{"Authorization": {"Bearer " + good}}, 200, ""},
		{"scheme in any case", "/h", map[string][]string{"Authorization": {"bEaReR " + good}}, 200, ""},
		{"several spaces after the scheme", "/h", map[string][]string{"Authorization": {"Bearer    " + good}}, 200, ""},
		// nginx refuses a second Authorization line itself ("client sent
		// duplicate header line"); the plugin's own refusal of several
		// (token_malformed) is the second line, for an nginx that would not.
		{"two Authorization headers, both valid", "/h", map[string][]string{"Authorization": {"Bearer " + good, "Bearer " + other}}, 400, nginxBadRequest},
		{"two Authorization headers, second empty", "/h", map[string][]string{"Authorization": {"Bearer " + good, ""}}, 400, nginxBadRequest},
		{"a tab after the scheme", "/h", map[string][]string{"Authorization": {"Bearer\t" + good}}, 401, "token_missing"},
		{"no scheme", "/h", map[string][]string{"Authorization": {good}}, 401, "token_missing"},
		{"another scheme", "/h", map[string][]string{"Authorization": {"Basic " + good}}, 401, "token_missing"},
		{"a trailing comma", "/h", map[string][]string{"Authorization": {"Bearer " + good + ","}}, 401, "token_malformed"},
		{"non-ASCII bytes", "/h", map[string][]string{"Authorization": {"Bearer " + good + "é"}}, 401, "token_malformed"},
		{"past max_token_bytes", "/small", map[string][]string{"Authorization": {"Bearer " + strings.Repeat("a", 2000)}}, 401, "token_too_large"},
		// nginx refuses these before any plugin runs (Kong's 494 -> 400).
		{"a header line past nginx's 8k buffer", "/h", map[string][]string{"Authorization": {"Bearer " + strings.Repeat("a", 9000)}}, 400, nginxTooLarge},
		{"header lines past nginx's four 8k buffers", "/h", map[string][]string{"Authorization": {"Bearer " + good}, "X-Pad": repeat(strings.Repeat("p", 7000), 5)}, 400, nginxTooLarge},
		// Kong 3.9.3's nginx takes at most 1000 header lines (max_headers);
		// Kong hands a plugin at most 1000 and drops the fact that it cut,
		// so the plugin refuses 1000 (a second token could hide past the
		// cut of an nginx without that limit).
		{"999 header lines with the token", "/h", padded(999, "Authorization", "Bearer "+good), 200, ""},
		{"1000 header lines", "/h", padded(1000, "Authorization", "Bearer "+good), 431, "request_headers_too_many"},
		{"1001 header lines", "/h", padded(1001, "Authorization", "Bearer "+good), 400, nginxTooLarge},
		{"a cookie token past line 1000", "/c", padded(1001, "Cookie", "sid="+good), 400, nginxTooLarge},
		{"token in the query string only", "/h?access_token=" + good, nil, 401, "token_missing"},
		{"cookie", "/c", map[string][]string{"Cookie": {"sid=" + good}}, 200, ""},
		{"cookie split over two Cookie fields (HTTP/2)", "/c", map[string][]string{"Cookie": {"a=1", "sid=" + good}}, 200, ""},
		{"token cookie set twice", "/c", map[string][]string{"Cookie": {"sid=" + good + "; sid=" + other}}, 401, "token_malformed"},
		{"token cookie in two Cookie fields", "/c", map[string][]string{"Cookie": {"sid=" + good, "sid=" + other}}, 401, "token_malformed"},
		{"header and cookie disagree: the header wins", "/c", map[string][]string{"Authorization": {"Bearer " + good}, "Cookie": {"sid=garbage"}}, 200, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, _, body := send(t, gw, "GET", c.path, c.headers)
			wantAnswer(t, status, string(body), c.status, c.code)
		})
	}
	// Raw bytes, as a client's reach nginx: HTTP/1.0, header names in any
	// case (HTTP/2 sends them lower-case; Kong's get_headers lower-cases them
	// all). (A token in a form body: TestRFC6750BodyAndQueryTokensIgnored.)
	for _, c := range []struct {
		name, raw string
		status    int
		code      string
	}{
		{"HTTP/1.0", "GET /h HTTP/1.0\r\nAuthorization: Bearer " + good + "\r\n\r\n", 200, ""},
		{"HTTP/1.0, name in capitals", "GET /h HTTP/1.0\r\nAUTHORIZATION: Bearer " + good + "\r\n\r\n", 200, ""},
		{"HTTP/1.1, name in lower case as HTTP/2 sends it", "GET /h HTTP/1.1\r\nHost: gw\r\nauthorization: Bearer " + good + "\r\n\r\n", 200, ""},
		{"HTTP/1.0, the header twice in two spellings", "GET /h HTTP/1.0\r\nAuthorization: Bearer " + good + "\r\nauthorization: Bearer " + other + "\r\n\r\n", 400, nginxBadRequest},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := rawRequest(t, gw, c.raw)
			wantAnswer(t, status, body, c.status, c.code)
		})
	}
}

// nginxTooLarge and nginxBadRequest mark an expected answer from nginx,
// not from a plugin: Kong's error handler's message (in text/plain, its
// error_default_type, as the request has no Accept header).
const (
	nginxTooLarge   = "Request header or cookie too large"
	nginxBadRequest = "Bad request"
)

// wantAnswer checks a status and either a denial code or, for an nginx
// answer, Kong's message for it.
func wantAnswer(t *testing.T, status int, body string, wantStatus int, code string) {
	t.Helper()
	want := `"code":"` + code + `"`
	if code == nginxTooLarge || code == nginxBadRequest {
		want = code + "\nrequest_id: "
	}
	if status != wantStatus || (code != "" && !strings.Contains(body, want)) {
		t.Fatalf("got %d %s, want %d %s", status, body, wantStatus, code)
	}
}

func repeat(v string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// padded is a request of n header lines on the wire: name with values,
// Go's client's own three (Host, User-Agent, Accept-Encoding) and filler
// lines (one value each, under distinct names, the way a client pads a
// request).
func padded(n int, name string, values ...string) map[string][]string {
	h := map[string][]string{name: values}
	for i := range n - len(values) - 3 {
		h[fmt.Sprintf("X-Pad-%04d", i)] = []string{"1"}
	}
	return h
}

// The same for X-Payment-Token, through jwt-claims and the payment-token
// binary with a real Redis behind the revocation follower: one header is
// read; several are refused, whatever their spelling; a comma-joined pair,
// padding bytes or a token elsewhere (query, body) are not a token.
func TestPaymentTokenRequestShapes(t *testing.T) {
	eachGateway(t, paymentTokenRequestShapes)
}

func paymentTokenRequestShapes(t *testing.T, kong string) {
	rdb := redistest.Start(t)
	key := ed25519.NewKeyFromSeed([]byte("subgate-spec-only-ed25519-seed!!"))
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	pub := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	o := observeEchoOn(t, kong, fmt.Sprintf(`      - name: paid
        paths: [/p]
        plugins:
          - name: jwt-claims
            config: {keys: [{kid: hs, algorithm: HS256, secret: %q}]}
          - name: payment-token
            config:
              keys: [{kid: pay, algorithm: EdDSA, public_key: %q}]
              issuers: [https://payments.example]
              audiences: [subgate]
              required_entitlements: [coach]
              redis: {addresses: [%q]}
`, obsSecret, pub, rdb.Addr), "jwt-claims", "payment-token")
	iss, err := paytoken.NewIssuer(paytoken.IssuerOptions{Key: key, Kid: "pay", Issuer: "https://payments.example", Audience: "subgate"})
	if err != nil {
		t.Fatal(err)
	}
	pay := func() string {
		tok, err := iss.Issue(alice, []string{"coach"})
		if err != nil {
			t.Fatal(err)
		}
		return tok.Token
	}
	good, other := pay(), pay()
	bearer := "Bearer " + obsToken(t, time.Hour)
	for _, c := range []struct {
		name, path string
		payment    []string
		status     int
		code       string
	}{
		{"one header", "/p", []string{good}, 200, ""},
		{"two headers", "/p", []string{good, other}, 401, "payment_token_invalid"},
		{"two headers, second empty", "/p", []string{good, ""}, 401, "payment_token_invalid"},
		{"a comma-joined pair", "/p", []string{good + "," + other}, 401, "payment_token_invalid"},
		{"a scheme before the token", "/p", []string{"Bearer " + good}, 401, "payment_token_invalid"},
		{"non-ASCII bytes", "/p", []string{good + "é"}, 401, "payment_token_invalid"},
		{"none", "/p", nil, 401, "payment_token_missing"},
		{"in the query string only", "/p?payment_token=" + good, nil, 401, "payment_token_missing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", c.path, nil)
			req.Header.Set("Authorization", bearer)
			if c.payment != nil {
				req.Header["X-Payment-Token"] = c.payment
			}
			o.ServeHTTP(rec, req)
			wantAnswer(t, rec.Code, rec.Body.String(), c.status, c.code)
		})
	}
	// On the wire: HTTP/1.0 and the name in any case; two spellings of the
	// name are one header twice.
	gw := o.URL(t)
	for _, c := range []struct {
		name, lines string
		status      int
		code        string
	}{
		{"HTTP/1.0, lower-case name", "x-payment-token: " + good, 200, ""},
		{"HTTP/1.0, capitals", "X-PAYMENT-TOKEN: " + good, 200, ""},
		{"HTTP/1.0, two spellings", "X-Payment-Token: " + good + "\r\nx-payment-token: " + other, 401, "payment_token_invalid"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := rawRequest(t, gw, "GET /p HTTP/1.0\r\nAuthorization: "+bearer+"\r\n"+c.lines+"\r\n\r\n")
			wantAnswer(t, status, body, c.status, c.code)
		})
	}
}

// rawRequest writes raw bytes to the gateway, as a client's reach nginx,
// and reads the answer.
func rawRequest(t *testing.T, gw string, raw string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(gw, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
