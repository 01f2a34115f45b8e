package jwtverify

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func mustVerifier(t testing.TB, o Config) *Verifier {
	t.Helper()
	v, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func wantKind(t *testing.T, err error, k Kind) {
	t.Helper()
	if err == nil {
		t.Fatalf("verified; want refusal of kind %d", k)
	}
	if got := KindOf(err); got != k {
		t.Fatalf("kind = %d (%v), want %d", got, err, k)
	}
}

func TestEveryAlgorithmRoundTrips(t *testing.T) {
	for _, alg := range Algorithms {
		t.Run(alg, func(t *testing.T) {
			s := newSigner(t, alg)
			v := mustVerifier(t, Config{Keys: []Key{s.key(t, "k1")}, Now: fixedNow(t0)})
			got, err := v.Verify(s.sign(t, "k1", claimsAt(t0)))
			if err != nil {
				t.Fatal(err)
			}
			if got.Algorithm != alg || got.Kid != "k1" || got.Claims["sub"] != "c0ffee00-0000-4000-8000-000000000001" {
				t.Fatalf("unexpected result %+v", got)
			}
			if !got.ExpiresAt.Equal(t0.Add(10*time.Minute)) || !got.IssuedAt.Equal(t0) {
				t.Fatalf("times not extracted: %+v", got)
			}
		})
	}
}

func TestAlgNoneIsRefused(t *testing.T) {
	s := newSigner(t, "ES256")
	v := mustVerifier(t, Config{Keys: []Key{s.key(t, "k1")}, Now: fixedNow(t0)})
	tok := jwt.NewWithClaims(jwt.SigningMethodNone, claimsAt(t0))
	tok.Header["kid"] = "k1"
	raw, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(raw)
	wantKind(t, err, InvalidSignature)
}

// The classic confusion: the attacker signs HS256 with the RSA public key's
// PEM bytes as the HMAC secret, hoping the verifier feeds its public key to
// HMAC. The key's algorithm is fixed to RS256, so the token is refused.
func TestAlgorithmConfusionIsRefused(t *testing.T) {
	s := newSigner(t, "RS256")
	v := mustVerifier(t, Config{Keys: []Key{s.key(t, "k1")}, Now: fixedNow(t0)})
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claimsAt(t0))
	tok.Header["kid"] = "k1"
	raw, err := tok.SignedString([]byte(s.pubPEM))
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(raw)
	wantKind(t, err, InvalidSignature)

	// Same with an HS key configured next to it under another kid: the kid
	// decides the key, the key decides the algorithm.
	h := newSigner(t, "HS256")
	v2 := mustVerifier(t, Config{Keys: []Key{s.key(t, "k1"), h.key(t, "h1")}, Now: fixedNow(t0)})
	_, err = v2.Verify(raw)
	wantKind(t, err, InvalidSignature)
}

func TestOtherKeysSignatureIsRefused(t *testing.T) {
	good, evil := newSigner(t, "ES256"), newSigner(t, "ES256")
	v := mustVerifier(t, Config{Keys: []Key{good.key(t, "k1")}, Now: fixedNow(t0)})
	_, err := v.Verify(evil.sign(t, "k1", claimsAt(t0)))
	wantKind(t, err, InvalidSignature)
}

func TestTamperedPayloadIsRefused(t *testing.T) {
	s := newSigner(t, "EdDSA")
	v := mustVerifier(t, Config{Keys: []Key{s.key(t, "k1")}, Now: fixedNow(t0)})
	parts := strings.Split(s.sign(t, "k1", claimsAt(t0)), ".")
	c := claimsAt(t0)
	c["sub"] = "someone-else"
	other := strings.Split(s.sign(t, "k1", c), ".")
	_, err := v.Verify(parts[0] + "." + other[1] + "." + parts[2])
	wantKind(t, err, InvalidSignature)
}

func TestUnknownAndOddKids(t *testing.T) {
	s := newSigner(t, "ES256")
	v := mustVerifier(t, Config{Keys: []Key{s.key(t, "k1")}, Now: fixedNow(t0)})
	_, err := v.Verify(s.sign(t, "k2", claimsAt(t0)))
	wantKind(t, err, UnknownKey)
	_, err = v.Verify(s.sign(t, "", claimsAt(t0))) // no kid, and no kid-less key configured
	wantKind(t, err, UnknownKey)

	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claimsAt(t0))
	tok.Header["kid"] = 42
	raw, _ := tok.SignedString(s.priv)
	_, err = v.Verify(raw)
	wantKind(t, err, Malformed)
}

func TestTimes(t *testing.T) {
	s := newSigner(t, "ES256")
	key := s.key(t, "k1")
	c := claimsAt(t0)
	c["exp"] = t0.Unix()
	c["nbf"] = t0.Add(-time.Hour).Unix()
	c["iat"] = t0.Add(-time.Hour).Unix()
	tok := s.sign(t, "k1", c)
	tests := []struct {
		name   string
		now    time.Time
		leeway time.Duration
		want   Kind
	}{
		{"before exp", t0.Add(-time.Second), 0, 0},
		{"at exp", t0, 0, Expired},
		{"expired, within leeway", t0.Add(20 * time.Second), 30 * time.Second, 0},
		{"expired, beyond leeway", t0.Add(31 * time.Second), 30 * time.Second, Expired},
		{"nbf and iat in the future", t0.Add(-2 * time.Hour), 0, NotYetValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := mustVerifier(t, Config{Keys: []Key{key}, LeewaySeconds: int(tt.leeway / time.Second), Now: fixedNow(tt.now)})
			_, err := v.Verify(tok)
			if tt.want == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantKind(t, err, tt.want)
		})
	}

	iat := claimsAt(t0)
	iat["iat"] = t0.Add(time.Minute).Unix()
	v0 := mustVerifier(t, Config{Keys: []Key{key}, Now: fixedNow(t0)})
	_, err0 := v0.Verify(s.sign(t, "k1", iat))
	wantKind(t, err0, NotYetValid)

	nbf := claimsAt(t0)
	nbf["nbf"] = t0.Add(time.Minute).Unix()
	v := mustVerifier(t, Config{Keys: []Key{key}, Now: fixedNow(t0)})
	_, err := v.Verify(s.sign(t, "k1", nbf))
	wantKind(t, err, NotYetValid)

	noExp := claimsAt(t0)
	delete(noExp, "exp")
	_, err = v.Verify(s.sign(t, "k1", noExp))
	wantKind(t, err, ClaimMissing)

	badExp := claimsAt(t0)
	badExp["exp"] = "tomorrow"
	_, err = v.Verify(s.sign(t, "k1", badExp))
	wantKind(t, err, Malformed)
}

func TestIssuerAudienceAndRequiredClaims(t *testing.T) {
	s := newSigner(t, "ES256")
	key := s.key(t, "k1")
	tok := s.sign(t, "k1", claimsAt(t0))
	multiAud := claimsAt(t0)
	multiAud["aud"] = []string{"other", "subgate"}
	tests := []struct {
		name string
		o    Config
		tok  string
		want Kind
	}{
		{"issuer in list", Config{Issuers: []string{"https://a", "https://id.example"}}, tok, 0},
		{"issuer not in list", Config{Issuers: []string{"https://a"}}, tok, IssuerInvalid},
		{"audience in list", Config{Audiences: []string{"x", "subgate"}}, tok, 0},
		{"audience not in list", Config{Audiences: []string{"x"}}, tok, AudienceInvalid},
		{"one of several audiences", Config{Audiences: []string{"subgate"}}, s.sign(t, "k1", multiAud), 0},
		{"required claim present", Config{RequiredClaims: []string{"country"}}, tok, 0},
		{"required claim missing", Config{RequiredClaims: []string{"plan"}}, tok, ClaimMissing},
		{"too large", Config{MaxTokenBytes: 64}, tok, TooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Keys, tt.o.Now = []Key{key}, fixedNow(t0)
			_, err := mustVerifier(t, tt.o).Verify(tt.tok)
			if tt.want == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantKind(t, err, tt.want)
		})
	}
}

// Registered claims of the wrong type are refused even where the route does
// not check their values (found by the peer suites: Envoy's jwt_verify_lib
// refuses them, subgate let them through).
func TestRegisteredClaimTypes(t *testing.T) {
	s := newSigner(t, "ES256")
	v := mustVerifier(t, Config{Keys: []Key{s.key(t, "k1")}, Now: fixedNow(t0)})
	for _, tt := range []struct {
		claim string
		value any
		ok    bool
	}{
		{"iss", 123, false}, {"sub", map[string]any{"id": "x"}, false}, {"sub", 42, false}, {"jti", 7, false},
		{"aud", map[string]any{"a": 1}, false}, {"aud", []any{"ok", 2}, false}, {"aud", true, false},
		{"iss", "https://id.example", true}, {"aud", []any{"a", "b"}, true}, {"aud", "a", true}, {"jti", "j-1", true},
	} {
		c := claimsAt(t0)
		c[tt.claim] = tt.value
		_, err := v.Verify(s.sign(t, "k1", c))
		if tt.ok {
			if err != nil {
				t.Errorf("%s = %v: %v", tt.claim, tt.value, err)
			}
			continue
		}
		if KindOf(err) != Malformed || err == nil {
			t.Errorf("%s = %v: %v, want Malformed", tt.claim, tt.value, err)
		}
	}
}

// NumericDates past what a time can hold are refused, not wrapped: golang-jwt
// read nbf 2^63-1 as long past (the token passed) and exp 1e300 as expired
// (found by the peer suites, from Envoy's NotYetValidToken).
func TestNumericDatesOutOfRange(t *testing.T) {
	s := newSigner(t, "ES256")
	v := mustVerifier(t, Config{Keys: []Key{s.key(t, "k1")}, Now: fixedNow(t0)})
	for _, tt := range []struct {
		claim string
		value any
	}{
		{"nbf", 9223372036854775807.0}, {"nbf", 1e300}, {"iat", 9223372036854775807.0}, {"exp", 1e300}, {"exp", -1e19},
	} {
		c := claimsAt(t0)
		c[tt.claim] = tt.value
		_, err := v.Verify(s.sign(t, "k1", c))
		if err == nil || KindOf(err) != Malformed {
			t.Errorf("%s = %v: %v, want Malformed", tt.claim, tt.value, err)
		}
	}
	c := claimsAt(t0)
	c["exp"] = float64(maxNumericDate) // the last representable second still verifies
	if _, err := v.Verify(s.sign(t, "k1", c)); err != nil {
		t.Fatal(err)
	}
	// An out-of-range date under a bad signature is a bad signature.
	c["nbf"] = 1e300
	tok := s.sign(t, "k1", c)
	_, err := v.Verify(tok[:len(tok)-4] + "AAAA")
	wantKind(t, err, InvalidSignature)
}

func TestMalformedInputs(t *testing.T) {
	s := newSigner(t, "ES256")
	v := mustVerifier(t, Config{Keys: []Key{s.key(t, "k1")}, Now: fixedNow(t0)})
	good := s.sign(t, "k1", claimsAt(t0))
	for _, in := range []string{"", "abc", "a.b", "a.b.c", "....", good + ".x", "e30.e30.", strings.Repeat("a", 100)} {
		_, err := v.Verify(in)
		wantKind(t, err, Malformed)
	}
	// Signature bytes altered in their encoding only (non-canonical base64)
	// must not verify either.
	parts := strings.Split(good, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	_, err := v.Verify(parts[0] + "." + parts[1] + "." + base64.URLEncoding.EncodeToString(sig))
	if err == nil {
		t.Fatal("padded signature accepted")
	}
}

func TestCacheServesRepeatsButNeverPastExp(t *testing.T) {
	s := newSigner(t, "ES256")
	now := t0
	v := mustVerifier(t, Config{Keys: []Key{s.key(t, "k1")}, CacheSize: 8, Now: func() time.Time { return now }})
	tok := s.sign(t, "k1", claimsAt(t0))
	first, err := v.Verify(tok)
	if err != nil || first.Cached {
		t.Fatalf("first: %v %+v", err, first)
	}
	second, err := v.Verify(tok)
	if err != nil || !second.Cached {
		t.Fatalf("second should be a cache hit: %v %+v", err, second)
	}
	now = t0.Add(10 * time.Minute) // exactly exp
	_, err = v.Verify(tok)
	wantKind(t, err, Expired)
	if v.cache.Len() != 0 {
		t.Fatal("expired entry still cached")
	}
	// A failed verification is not cached as a success.
	now = t0
	evil := newSigner(t, "ES256").sign(t, "k1", claimsAt(t0))
	for range 2 {
		_, err = v.Verify(evil)
		wantKind(t, err, InvalidSignature)
	}
}

func TestBadConfigurations(t *testing.T) {
	rs := newSigner(t, "RS256")
	es := newSigner(t, "ES256")
	t.Setenv("SUBGATE_SHORT", "too-short")
	t.Setenv("SUBGATE_LONG", strings.Repeat("s", 64))
	emptyFile := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(emptyFile, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	privDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	privPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))
	tests := []struct {
		name string
		keys []Key
		want string
	}{
		{"no keys", nil, "at least one of these fields must be non-empty: 'keys', 'jwks_url'"},
		{"no algorithm", []Key{{Kid: "a", PublicKey: rs.pubPEM}}, "config.keys[1].algorithm: required field missing"},
		{"alg none", []Key{{Kid: "a", Algorithm: "none", PublicKey: rs.pubPEM}}, "expected one of: HS256"},
		{"unknown alg", []Key{{Kid: "a", Algorithm: "RS1", PublicKey: rs.pubPEM}}, "expected one of: HS256"},
		{"unparsable PEM", []Key{{Kid: "a", Algorithm: "RS256", PublicKey: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}}, "a"},
		{"not PEM", []Key{{Kid: "a", Algorithm: "RS256", PublicKey: "hello"}}, "not PEM"},
		{"private key", []Key{{Kid: "a", Algorithm: "RS256", PublicKey: privPEM}}, "never a private key"},
		{"alg does not fit key", []Key{{Kid: "a", Algorithm: "ES256", PublicKey: rs.pubPEM}}, "does not fit"},
		{"ES384 on P-256", []Key{{Kid: "a", Algorithm: "ES384", PublicKey: es.pubPEM}}, "does not fit"},
		{"missing secret env", []Key{{Kid: "a", Algorithm: "HS256", SecretEnv: "SUBGATE_NOPE_UNSET"}}, "unset or empty"},
		{"no secret_env", []Key{{Kid: "a", Algorithm: "HS256"}}, "an HMAC algorithm takes a secret, not public_key: set one of 'secret', 'secret_file', 'secret_env'"},
		{"short secret", []Key{{Kid: "a", Algorithm: "HS256", SecretEnv: "SUBGATE_SHORT"}}, "at least 32"},
		{"short literal secret", []Key{{Kid: "a", Algorithm: "HS256", Secret: "12345"}}, "config.keys[1]: secret: an HS256 secret has at least 32 bytes"},
		{"short literal HS512 secret", []Key{{Kid: "a", Algorithm: "HS512", Secret: strings.Repeat("s", 63)}}, "an HS512 secret has at least 64 bytes"},
		{"a vault reference and a secret file", []Key{{Kid: "a", Algorithm: "HS256", Secret: "{vault://env/X}", SecretFile: "/f"}}, "vault reference was not resolved"},
		{"HS with public key", []Key{{Kid: "a", Algorithm: "HS256", PublicKey: rs.pubPEM}}, "not public_key"},
		{"RS with secret", []Key{{Kid: "a", Algorithm: "RS256", SecretEnv: "SUBGATE_LONG"}}, "not a secret"},
		{"keys: [] and no JWKS", []Key{}, "at least one of these fields must be non-empty: 'keys', 'jwks_url'"},
		{"secret file missing", []Key{{Kid: "a", Algorithm: "HS256", SecretFile: "/nonexistent/hs"}}, "keys[1].secret_file: cannot read /nonexistent/hs"},
		{"secret file empty", []Key{{Kid: "a", Algorithm: "HS256", SecretFile: emptyFile}}, "is empty"},
		{"two secret sources", []Key{{Kid: "a", Algorithm: "HS256", Secret: strings.Repeat("s", 32), SecretEnv: "SUBGATE_LONG"}}, "only one or none of these fields must be set"},
		{"unresolved vault reference", []Key{{Kid: "a", Algorithm: "HS256", Secret: "{vault://env/SUBGATE_X}"}}, "vault reference was not resolved"},
		{"duplicate kid", []Key{{Kid: "a", Algorithm: "RS256", PublicKey: rs.pubPEM}, {Kid: "a", Algorithm: "RS256", PublicKey: rs.pubPEM}}, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Config{Keys: tt.keys})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	if _, err := New(Config{Keys: []Key{{Kid: "a", Algorithm: "HS256", SecretEnv: "SUBGATE_LONG"}}}); err != nil {
		t.Fatalf("valid HS256 config refused: %v", err)
	}
}

// An HS secret reaches the verifier from the field (a resolved vault
// reference), a file, or the environment, and all three verify alike.
func TestSecretSources(t *testing.T) {
	h := newSigner(t, "HS256")
	file := filepath.Join(t.TempDir(), "hs")
	if err := os.WriteFile(file, append(h.secret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SUBGATE_HS_TEST", string(h.secret))
	for name, k := range map[string]Key{
		"secret":      {Kid: "h1", Algorithm: "HS256", Secret: string(h.secret)},
		"secret_file": {Kid: "h1", Algorithm: "HS256", SecretFile: file},
		"secret_env":  {Kid: "h1", Algorithm: "HS256", SecretEnv: "SUBGATE_HS_TEST"},
	} {
		v := mustVerifier(t, Config{Keys: []Key{k}, Now: fixedNow(t0)})
		if _, err := v.Verify(h.sign(t, "h1", claimsAt(t0))); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// RFC 7515 rules golang-jwt leaves to the application: a repeated member
// name (in the header or the claims, at any depth), an escaped lone
// surrogate and a "crit" header are refused, even when the signature is good.
func TestJWSRulesBeyondGolangJWT(t *testing.T) {
	h := newSigner(t, "HS256")
	v := mustVerifier(t, Config{Keys: []Key{h.key(t, "h1")}, Now: fixedNow(t0)})
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	signed := func(header, payload string) string {
		in := b64(header) + "." + b64(payload)
		mac := hmac.New(sha256.New, h.secret)
		mac.Write([]byte(in))
		return in + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	}
	exp := fmt.Sprint(t0.Add(time.Hour).Unix())
	for _, good := range []string{
		signed(`{"alg":"HS256","kid":"h1"}`, `{"sub":"a","exp":`+exp+`}`),
		signed(`{"alg":"HS256","kid":"h1"}`, `{"sub":"a\ud83d\ude00\\ud800","exp":`+exp+`}`), // a pair, an escaped backslash
	} {
		if _, err := v.Verify(good); err != nil {
			t.Fatalf("a hand-signed control token: %v", err)
		}
	}
	for name, tok := range map[string]string{
		"alg twice in the header": signed(`{"alg":"HS256","alg":"HS256","kid":"h1"}`, `{"sub":"a","exp":`+exp+`}`),
		"sub twice in the claims": signed(`{"alg":"HS256","kid":"h1"}`, `{"sub":"a","sub":"b","exp":`+exp+`}`),
		"a nested repeat":         signed(`{"alg":"HS256","kid":"h1"}`, `{"sub":"a","x":{"y":1,"y":2},"exp":`+exp+`}`),
		"crit header":             signed(`{"alg":"HS256","kid":"h1","crit":["exp"],"exp":1}`, `{"sub":"a","exp":`+exp+`}`),
		"a lone surrogate in sub": signed(`{"alg":"HS256","kid":"h1"}`, `{"sub":"a\ud800","exp":`+exp+`}`),
		"a lone low surrogate":    signed(`{"alg":"HS256","kid":"h1"}`, `{"sub":"\udc00a","exp":`+exp+`}`),
		"one in the header":       signed(`{"alg":"HS256","kid":"h1","x":"\udbff"}`, `{"sub":"a","exp":`+exp+`}`),
	} {
		if _, err := v.Verify(tok); err == nil || KindOf(err) != Malformed { // KindOf(nil) is Malformed
			t.Errorf("%s: err %v, want Malformed", name, err)
		}
	}
}
