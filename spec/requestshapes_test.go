package spec

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/subgate/subgate/docker/demosvc"
)

// Every way a request can carry or hide a bearer token, through the real
// jwt-claims binary: a token header sent twice or a token cookie set twice
// is refused (the gateway would verify one while the upstream might read
// the other); the scheme is case-insensitive (RFC 7235 2.1) and separated
// by spaces only; a token in the query string or the body is ignored (RFC
// 6750 2.2 and 2.3 are MAYs: only the header and the configured cookie are
// read), so such a request has no token.
func TestRequestShapes(t *testing.T) {
	upstream := httptest.NewServer(demosvc.Echo())
	defer upstream.Close()
	o := observe(t, fmt.Sprintf(`_format_version: "3.0"
services:
  - name: echo
    url: %s
    routes:
      - name: header
        paths: [/h]
        plugins:
          - name: jwt-claims
            config: {keys: [{kid: hs, algorithm: HS256, secret: %q}]}
      - name: cookie
        paths: [/c]
        plugins:
          - name: jwt-claims
            config: {keys: [{kid: hs, algorithm: HS256, secret: %q}], token_cookie: sid}
`, upstream.URL, obsSecret, obsSecret), "jwt-claims")
	good, other := obsToken(t, time.Hour), obsToken(t, 2*time.Hour)
	for _, c := range []struct {
		name, path string
		headers    map[string][]string
		status     int
		code       string
	}{
		{"one header", "/h", map[string][]string{"Authorization": {"Bearer " + good}}, 200, ""},
		{"scheme in any case", "/h", map[string][]string{"Authorization": {"bEaReR " + good}}, 200, ""},
		{"several spaces after the scheme", "/h", map[string][]string{"Authorization": {"Bearer    " + good}}, 200, ""},
		{"two Authorization headers, both valid", "/h", map[string][]string{"Authorization": {"Bearer " + good, "Bearer " + other}}, 401, "token_malformed"},
		{"two Authorization headers, second empty", "/h", map[string][]string{"Authorization": {"Bearer " + good, ""}}, 401, "token_malformed"},
		{"a tab after the scheme", "/h", map[string][]string{"Authorization": {"Bearer\t" + good}}, 401, "token_missing"},
		{"no scheme", "/h", map[string][]string{"Authorization": {good}}, 401, "token_missing"},
		{"another scheme", "/h", map[string][]string{"Authorization": {"Basic " + good}}, 401, "token_missing"},
		{"a trailing comma", "/h", map[string][]string{"Authorization": {"Bearer " + good + ","}}, 401, "token_malformed"},
		{"non-ASCII bytes", "/h", map[string][]string{"Authorization": {"Bearer " + good + "é"}}, 401, "token_malformed"},
		{"past max_token_bytes", "/h", map[string][]string{"Authorization": {"Bearer " + strings.Repeat("a", 9000)}}, 401, "token_too_large"},
		{"token in the query string only", "/h?access_token=" + good, nil, 401, "token_missing"},
		{"cookie", "/c", map[string][]string{"Cookie": {"sid=" + good}}, 200, ""},
		{"cookie split over two Cookie fields (HTTP/2)", "/c", map[string][]string{"Cookie": {"a=1", "sid=" + good}}, 200, ""},
		{"token cookie set twice", "/c", map[string][]string{"Cookie": {"sid=" + good + "; sid=" + other}}, 401, "token_malformed"},
		{"token cookie in two Cookie fields", "/c", map[string][]string{"Cookie": {"sid=" + good, "sid=" + other}}, 401, "token_malformed"},
		{"header and cookie disagree: the header wins", "/c", map[string][]string{"Authorization": {"Bearer " + good}, "Cookie": {"sid=garbage"}}, 200, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", c.path, nil)
			for k, vs := range c.headers {
				req.Header[k] = vs
			}
			o.g.ServeHTTP(rec, req)
			if rec.Code != c.status || (c.code != "" && !strings.Contains(rec.Body.String(), `"code":"`+c.code+`"`)) {
				t.Fatalf("got %d %s, want %d %s", rec.Code, rec.Body, c.status, c.code)
			}
		})
	}
}
