package denial

import (
	"regexp"
	"strings"
	"testing"
)

// RFC 7235 4.1 / 2.1: WWW-Authenticate = 1#challenge, challenge =
// auth-scheme [ 1*SP ( token68 / #auth-param ) ], auth-param = token BWS
// "=" BWS ( token / quoted-string ). parseChallenge reads one challenge
// and returns its scheme and params; ok is false on any syntax error or a
// repeated param name.
func parseChallenge(s string) (scheme string, params map[string]string, ok bool) {
	const tchar = "[!#$%&'*+.^_`|~0-9A-Za-z-]+"
	head := regexp.MustCompile(`^(` + tchar + `)(?: +(.*))?$`)
	m := head.FindStringSubmatch(s)
	if m == nil {
		return "", nil, false
	}
	scheme, rest := m[1], m[2]
	params = map[string]string{}
	param := regexp.MustCompile(`^(` + tchar + `)[ \t]*=[ \t]*(?:(` + tchar + `)|"((?:[\t !#-\[\]-~]|\\[\t -~])*)")[ \t]*(?:,[ \t]*|$)`)
	for rest != "" {
		p := param.FindStringSubmatch(rest)
		if p == nil {
			return "", nil, false
		}
		name := strings.ToLower(p[1])
		if _, dup := params[name]; dup {
			return "", nil, false
		}
		params[name] = p[2] + p[3]
		rest = rest[len(p[0]):]
	}
	return scheme, params, true
}

// RFC 6750 3 and 3.1, RFC 7235 4.1: every 401 carries a Bearer challenge
// with at least one auth-param and each attribute once; a request without
// a token gets no error information; every other 401 says invalid_token,
// and error_description keeps to %x20-21 / %x23-5B / %x5D-7E.
func TestRFC6750Challenges(t *testing.T) {
	described := regexp.MustCompile(`^[\x20\x21\x23-\x5b\x5d-\x7e]*$`)
	for _, s := range Specs {
		if s.Status != 401 {
			continue
		}
		d := New(s.Code, "a \"quoted\" message, \\ with ünïcode\r\n")
		www := d.Headers()["WWW-Authenticate"]
		if len(www) != 1 {
			t.Fatalf("%s: %d challenges", s.Code, len(www))
		}
		scheme, params, ok := parseChallenge(www[0])
		if !ok || scheme != "Bearer" || len(params) == 0 {
			t.Fatalf("%s: %q is not a Bearer challenge with auth-params", s.Code, www[0])
		}
		if s.Code == TokenMissing {
			if len(params) != 1 || params["realm"] != Realm {
				t.Errorf("%s: %q carries error information", s.Code, www[0])
			}
			continue
		}
		if params["error"] != "invalid_token" || !described.MatchString(params["error_description"]) || params["error_description"] == "" {
			t.Errorf("%s: %q", s.Code, www[0])
		}
	}
}

// RFC 7235 3.1: a 401 MUST send WWW-Authenticate. RFC 6750 3.1's
// insufficient_scope (403) is not used: subgate's 403s are about
// ownership and payment entitlements, not the bearer token's scope, so
// they carry no challenge; nor do 5xx.
func TestRFC7235EveryUnauthorizedHasAChallenge(t *testing.T) {
	for _, s := range Specs {
		www := New(s.Code, "").Headers()["WWW-Authenticate"]
		if (s.Status == 401) != (len(www) == 1) {
			t.Errorf("%s (%d): WWW-Authenticate %q", s.Code, s.Status, www)
		}
	}
	// The parser itself: a challenge it must refuse, and one it must read.
	for _, bad := range []string{"", "Bearer realm", `Bearer realm="a", realm="b"`, `Bearer error="a"b"`, "Bearer ,"} {
		if _, _, ok := parseChallenge(bad); ok {
			t.Errorf("parsed %q", bad)
		}
	}
	if s, p, ok := parseChallenge(`Bearer realm="x", error=invalid_token`); !ok || s != "Bearer" || p["error"] != "invalid_token" {
		t.Error("a valid challenge was not read")
	}
}
