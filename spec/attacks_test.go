package spec

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/subgate/subgate/docker/demosvc"
)

// attack is one case of the public JWT attack catalogues, as data: how the
// token is made and what the gateway must answer.
type attack struct {
	name string
	make func(k attackKeys) string
	code string // expected denial code (all are 401)
}

type attackKeys struct {
	rs, attackerRS  *rsa.PrivateKey
	es              *ecdsa.PrivateKey
	rsPEM, hsSecret string
	exp             int64
	evil            string // URL of a server counting fetches
}

var attacks = []attack{
	{"control: a good RS256 token", func(k attackKeys) string { return sign(jwt.SigningMethodRS256, k.rs, "rs", k.exp, nil) }, ""},
	{"alg none", func(k attackKeys) string { return unsigned(`{"alg":"none","kid":"rs"}`, k.exp) + "." }, "token_invalid_signature"},
	{"alg None (case)", func(k attackKeys) string { return unsigned(`{"alg":"None","kid":"rs"}`, k.exp) + "." }, "token_malformed"},
	{"empty signature", func(k attackKeys) string {
		t := sign(jwt.SigningMethodRS256, k.rs, "rs", k.exp, nil)
		return t[:strings.LastIndex(t, ".")+1]
	}, "token_invalid_signature"},
	{"algorithm confusion: HS256 keyed with the RSA public key PEM", func(k attackKeys) string {
		return sign(jwt.SigningMethodHS256, []byte(k.rsPEM), "rs", k.exp, nil)
	}, "token_invalid_signature"},
	{"key confusion: ES256 token naming the RS256 key", func(k attackKeys) string { return sign(jwt.SigningMethodES256, k.es, "rs", k.exp, nil) }, "token_invalid_signature"},
	{"key confusion: RS256 token naming the HS256 key", func(k attackKeys) string { return sign(jwt.SigningMethodRS256, k.rs, "hs", k.exp, nil) }, "token_invalid_signature"},
	{"kid traversal", func(k attackKeys) string {
		return sign(jwt.SigningMethodHS256, []byte(""), "../../../../dev/null", k.exp, nil)
	}, "token_unknown_key"},
	{"kid injection", func(k attackKeys) string {
		return sign(jwt.SigningMethodHS256, []byte("x"), "rs' OR '1'='1", k.exp, nil)
	}, "token_unknown_key"},
	{"jku: keys from the attacker's URL", func(k attackKeys) string {
		return sign(jwt.SigningMethodRS256, k.attackerRS, "rs", k.exp, map[string]any{"jku": k.evil + "/jwks"})
	}, "token_invalid_signature"},
	{"x5u: a certificate from the attacker's URL", func(k attackKeys) string {
		return sign(jwt.SigningMethodRS256, k.attackerRS, "rs", k.exp, map[string]any{"x5u": k.evil + "/cert"})
	}, "token_invalid_signature"},
	{"embedded jwk: the attacker's own key in the header", func(k attackKeys) string {
		n := base64.RawURLEncoding.EncodeToString(k.attackerRS.N.Bytes())
		return sign(jwt.SigningMethodRS256, k.attackerRS, "rs", k.exp, map[string]any{"jwk": map[string]any{"kty": "RSA", "n": n, "e": "AQAB"}})
	}, "token_invalid_signature"},
	{"psychic signature: ECDSA r = s = 0", func(k attackKeys) string {
		return unsigned(`{"alg":"ES256","kid":"es"}`, k.exp) + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 64))
	}, "token_invalid_signature"},
	{"crit header", func(k attackKeys) string {
		return sign(jwt.SigningMethodRS256, k.rs, "rs", k.exp, map[string]any{"crit": []string{"b64"}, "b64": false})
	}, "token_malformed"},
	{"duplicate alg member", func(k attackKeys) string {
		in := b64url(`{"alg":"HS256","alg":"HS256","kid":"hs"}`) + "." + b64url(fmt.Sprintf(`{"sub":%q,"exp":%d}`, alice, k.exp))
		mac := hmac.New(sha256.New, []byte(k.hsSecret))
		mac.Write([]byte(in))
		return in + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	}, "token_malformed"},
	{"base64 padding", func(k attackKeys) string {
		t := sign(jwt.SigningMethodRS256, k.rs, "rs", k.exp, nil)
		p := strings.Split(t, ".")
		return p[0] + "==." + p[1] + "." + p[2]
	}, "token_malformed"},
	{"expired", func(k attackKeys) string {
		return sign(jwt.SigningMethodRS256, k.rs, "rs", time.Now().Add(-time.Hour).Unix(), nil)
	}, "token_expired"},
	{"no exp", func(k attackKeys) string { return sign(jwt.SigningMethodRS256, k.rs, "rs", 0, nil) }, "token_claim_missing"},
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func unsigned(header string, exp int64) string {
	return b64url(header) + "." + b64url(fmt.Sprintf(`{"sub":%q,"exp":%d}`, alice, exp))
}

func sign(m jwt.SigningMethod, key any, kid string, exp int64, extra map[string]any) string {
	claims := jwt.MapClaims{"sub": alice}
	if exp != 0 {
		claims["exp"] = exp
	}
	t := jwt.NewWithClaims(m, claims)
	t.Header["kid"] = kid
	for k, v := range extra {
		t.Header[k] = v
	}
	s, err := t.SignedString(key)
	if err != nil {
		panic(err)
	}
	return s
}

// The public JWT attack catalogues, each case through the real jwt-claims
// binary with keys whose algorithm is fixed per key: nothing but the
// control token passes, each answer is the code a client can act on, and
// the gateway never fetches a URL a token names.
func TestAttackCatalogue(t *testing.T) {
	var fetches atomic.Int64
	evil := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { fetches.Add(1) }))
	defer evil.Close()
	upstream := httptest.NewServer(demosvc.Echo())
	defer upstream.Close()
	k := attackKeys{exp: time.Now().Add(time.Hour).Unix(), evil: evil.URL, hsSecret: obsSecret}
	var err error
	if k.rs, err = rsa.GenerateKey(rand.Reader, 2048); err == nil {
		k.attackerRS, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err == nil {
		k.es, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(pub any) string {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	}
	k.rsPEM = pemOf(&k.rs.PublicKey)
	o := observe(t, fmt.Sprintf(`_format_version: "3.0"
services:
  - name: echo
    url: %s
    routes:
      - name: r
        paths: [/r]
        plugins:
          - name: jwt-claims
            config:
              keys:
                - {kid: rs, algorithm: RS256, public_key: %q}
                - {kid: es, algorithm: ES256, public_key: %q}
                - {kid: hs, algorithm: HS256, secret: %q}
`, upstream.URL, k.rsPEM, pemOf(&k.es.PublicKey), obsSecret), "jwt-claims")
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			rec, _ := o.do(t, "/r", a.make(k))
			want := 401
			if a.code == "" {
				want = 200
			}
			if rec.Code != want || (a.code != "" && !strings.Contains(rec.Body.String(), `"code":"`+a.code+`"`)) {
				t.Fatalf("got %d %s, want %d %s", rec.Code, rec.Body, want, a.code)
			}
		})
	}
	if n := fetches.Load(); n != 0 {
		t.Fatalf("the gateway fetched a URL named in a token %d times", n)
	}
}
