package jwtverify

// Tests for rows of testdata/conformance.md that no earlier test checked.
// Both tokens verify through this package, so each holds for both.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// handMade signs header and payload, given as JSON text, with HS256 and
// the secret of h: the way to put bytes in a token no library would write.
func handMade(h signer, header, payload string) string {
	in := b64([]byte(header)) + "." + b64([]byte(payload))
	mac := hmac.New(sha256.New, h.secret)
	mac.Write([]byte(in))
	return in + "." + b64(mac.Sum(nil))
}

// hsFixture is a verifier with one HS256 key "h1" and a claims set valid at t0.
func hsFixture(t *testing.T, o Config) (signer, *Verifier, string) {
	h := newSigner(t, "HS256")
	o.Keys, o.Now = []Key{h.key(t, "h1")}, fixedNow(t0)
	return h, mustVerifier(t, o), fmt.Sprintf(`"sub":"a","exp":%d`, t0.Add(time.Hour).Unix())
}

// wantOK fails unless err is nil.
func wantOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: refused: %v", what, err)
	}
}

// RFC 7515 2, 3.1, 7.1 and RFC 7519 7.2 steps 1-2, 5: exactly three
// base64url segments, no padding, whitespace or line breaks; a JWE (five
// segments) is not a JWS.
func TestRFC7515CompactSerialization(t *testing.T) {
	h, v, claims := hsFixture(t, Config{})
	good := handMade(h, `{"alg":"HS256","kid":"h1"}`, "{"+claims+"}")
	wantOK(t, "control", func() error { _, err := v.Verify(good); return err }())
	p := strings.Split(good, ".")
	// macOver signs the segments exactly as written, so that only the
	// encoding rule, not the signature, can refuse them.
	macOver := func(hdr, payload string) string {
		mac := hmac.New(sha256.New, h.secret)
		mac.Write([]byte(hdr + "." + payload))
		return hdr + "." + payload + "." + b64(mac.Sum(nil))
	}
	for name, tok := range map[string]string{
		"a signed line break inside a segment": macOver(p[0], p[1][:4]+"\n"+p[1][4:]),
		"a signed CR LF inside a segment":      macOver(p[0][:3]+"\r\n"+p[0][3:], p[1]),
		"two segments":                         p[0] + "." + p[1],
		"four segments":                        good + ".",
		"JWE, five segments":                   p[0] + "." + p[1] + "." + p[2] + "." + p[2] + "." + p[2],
		"padding on the header":                p[0] + "=." + p[1] + "." + p[2],
		"a line break inside a segment":        p[0] + "." + p[1][:4] + "\n" + p[1][4:] + "." + p[2],
		"a CR inside a segment":                p[0] + "." + p[1] + "." + p[2][:4] + "\r" + p[2][4:],
		"a space inside a segment":             p[0][:3] + " " + p[0][3:] + "." + p[1] + "." + p[2],
		"standard base64 alphabet (+/)":        strings.NewReplacer("-", "+", "_", "/").Replace(good) + "+/",
		"leading whitespace":                   " " + good,
		"an empty header segment":              "." + p[1] + "." + p[2],
		"signature with a trailing byte":       good + "A",
	} {
		if _, err := v.Verify(tok); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

// RFC 7515 5.2 steps 2-3, RFC 7519 7.2 steps 3 and 10, RFC 8725 3.7: the
// header and the claims are UTF-8 JSON objects; Go's JSON decoder would
// replace invalid bytes silently, so they are checked before.
func TestRFC7515HeaderAndClaimsAreUTF8JSONObjects(t *testing.T) {
	h, v, claims := hsFixture(t, Config{})
	hdr := `{"alg":"HS256","kid":"h1"}`
	for name, tok := range map[string]string{
		"header is an array":                handMade(h, `["HS256"]`, "{"+claims+"}"),
		"header is not JSON":                handMade(h, `alg=HS256`, "{"+claims+"}"),
		"header with invalid UTF-8":         handMade(h, `{"alg":"HS256","kid":"h1","x":"`+"\xff"+`"}`, "{"+claims+"}"),
		"claims with invalid UTF-8":         handMade(h, hdr, `{`+claims+`,"name":"`+"\xc3\x28"+`"}`),
		"claims are an array":               handMade(h, hdr, `[`+claims[strings.Index(claims, ",")+1:]+`]`),
		"claims are a string":               handMade(h, hdr, `"a"`),
		"empty payload (detached content)":  handMade(h, hdr, ``),
		"claims followed by a second value": handMade(h, hdr, "{"+claims+"} {}"),
	} {
		if _, err := v.Verify(tok); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
	wantOK(t, "UTF-8 beyond ASCII", func() error {
		_, err := v.Verify(handMade(h, hdr, `{`+claims+`,"name":"Jürgen 名"}`))
		return err
	}())
}

// RFC 7515 4.1.1: alg must be present and is case-sensitive; an alg the
// verifier does not implement is refused.
func TestRFC7515AlgPresentAndCaseSensitive(t *testing.T) {
	h, v, claims := hsFixture(t, Config{})
	for name, hdr := range map[string]string{
		"no alg":            `{"kid":"h1"}`,
		"alg in lower case": `{"alg":"hs256","kid":"h1"}`,
		"alg unknown":       `{"alg":"HS257","kid":"h1"}`,
		"alg not a string":  `{"alg":256,"kid":"h1"}`,
		"alg empty":         `{"alg":"","kid":"h1"}`,
	} {
		if _, err := v.Verify(handMade(h, hdr, "{"+claims+"}")); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

// RFC 7515 4 (last paragraph) and 4.1.7, 4.1.8: header parameters a
// recipient does not understand are ignored unless listed in crit; x5t and
// x5t#S256 never select or replace the key.
func TestRFC7515UnknownHeaderParametersIgnored(t *testing.T) {
	h, v, claims := hsFixture(t, Config{})
	for name, hdr := range map[string]string{
		"a private parameter": `{"alg":"HS256","kid":"h1","x-trace":"abc"}`,
		"x5t":                 `{"alg":"HS256","kid":"h1","x5t":"` + b64(make([]byte, 20)) + `"}`,
		"x5t#S256":            `{"alg":"HS256","kid":"h1","x5t#S256":"` + b64(make([]byte, 32)) + `"}`,
	} {
		if _, err := v.Verify(handMade(h, hdr, "{"+claims+"}")); err != nil {
			t.Errorf("%s: refused: %v", name, err)
		}
	}
}

// RFC 7515 4.1.3 and 4.1.6, RFC 8725 3.10: a key or certificate chain
// carried in the token is never used to verify it: the attacker's own
// jwk or x5c does not make the attacker's signature good.
func TestRFC7515EmbeddedKeysNotTrusted(t *testing.T) {
	s := newSigner(t, "RS256")
	v := mustVerifier(t, Config{Keys: []Key{s.key(t, "k1")}, Now: fixedNow(t0)})
	attacker, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "attacker"},
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &attacker.PublicKey, attacker)
	if err != nil {
		t.Fatal(err)
	}
	for name, extra := range map[string]any{
		"jwk": map[string]any{"kty": "RSA", "n": b64(attacker.N.Bytes()), "e": "AQAB"},
		"x5c": []string{base64.StdEncoding.EncodeToString(der)},
	} {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claimsAt(t0))
		tok.Header["kid"], tok.Header[name] = "k1", extra
		raw, err := tok.SignedString(attacker)
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(raw)
		wantKind(t, err, InvalidSignature)
	}
}

// RFC 7515 4.1.4: kid is a case-sensitive string.
func TestRFC7515KidCaseSensitive(t *testing.T) {
	s := newSigner(t, "ES256")
	v := mustVerifier(t, Config{Keys: []Key{s.key(t, "k1")}, Now: fixedNow(t0)})
	_, err := v.Verify(s.sign(t, "K1", claimsAt(t0)))
	wantKind(t, err, UnknownKey)
	if _, err := v.Verify(s.sign(t, "k1", claimsAt(t0))); err != nil {
		t.Fatal(err)
	}
}

// RFC 7515 4.1.9, 4.1.10: typ and cty are media types, compared without
// case and with "application/" assumed when there is no "/".
func TestRFC7515TypIsAMediaType(t *testing.T) {
	h, v, claims := hsFixture(t, Config{Type: "example+jwt"})
	for _, typ := range []string{"example+jwt", "application/example+jwt", "Application/EXAMPLE+JWT"} {
		if _, err := v.Verify(handMade(h, `{"alg":"HS256","kid":"h1","typ":"`+typ+`"}`, "{"+claims+"}")); err != nil {
			t.Errorf("typ %q: refused: %v", typ, err)
		}
	}
	for _, hdr := range []string{`{"alg":"HS256","kid":"h1"}`, `{"alg":"HS256","kid":"h1","typ":"JWT"}`,
		`{"alg":"HS256","kid":"h1","typ":"text/example+jwt"}`, `{"alg":"HS256","kid":"h1","typ":7}`} {
		_, err := v.Verify(handMade(h, hdr, "{"+claims+"}"))
		wantKind(t, err, Malformed)
	}
}

// RFC 7519 5.2 and 7.2 step 8: cty "JWT" announces a nested JWT, whose
// payload is another token; subgate does not unwrap them, so it refuses
// rather than read the payload as claims. Other cty values are ignored
// (RFC 7515 4.1.10).
func TestRFC7519NestedJWTRefused(t *testing.T) {
	h, v, claims := hsFixture(t, Config{})
	for _, cty := range []string{"JWT", "jwt", "application/jwt"} {
		_, err := v.Verify(handMade(h, `{"alg":"HS256","kid":"h1","cty":"`+cty+`"}`, "{"+claims+"}"))
		wantKind(t, err, Malformed)
	}
	inner := handMade(h, `{"alg":"HS256","kid":"h1"}`, "{"+claims+"}")
	_, err := v.Verify(handMade(h, `{"alg":"HS256","kid":"h1","cty":"JWT"}`, inner))
	wantKind(t, err, Malformed)
	wantOK(t, "cty json", func() error {
		_, err := v.Verify(handMade(h, `{"alg":"HS256","kid":"h1","cty":"json"}`, "{"+claims+"}"))
		return err
	}())
}

// RFC 7519 4.1.1-4.1.7: the registered claims have types: iss, sub and jti
// strings, aud a string or an array of strings, exp, nbf and iat
// NumericDates. A wrong type is refused whether the route reads the claim
// or not.
func TestRFC7519ClaimTypes(t *testing.T) {
	h, v, _ := hsFixture(t, Config{})
	exp := t0.Add(time.Hour).Unix()
	tok := func(extra string) string {
		return handMade(h, `{"alg":"HS256","kid":"h1"}`, fmt.Sprintf(`{"exp":%d,%s}`, exp, extra))
	}
	for _, ok := range []string{`"iss":"i","sub":"s","jti":"j","aud":"a"`, `"aud":["a","b"]`, `"aud":[]`, `"nbf":1,"iat":1`} {
		if _, err := v.Verify(tok(ok)); err != nil {
			t.Errorf("%s: refused: %v", ok, err)
		}
	}
	for bad, kind := range map[string]Kind{
		`"iss":1`: Malformed, `"sub":{"id":"a"}`: Malformed, `"jti":7`: Malformed, `"sub":null`: Malformed,
		`"aud":1`: Malformed, `"aud":["a",1]`: Malformed, `"aud":null`: Malformed, `"aud":{"a":1}`: Malformed,
		`"nbf":"1"`: Malformed, `"iat":true`: Malformed,
	} {
		_, err := v.Verify(tok(bad))
		if KindOf(err) != kind || err == nil {
			t.Errorf("%s: err %v, want kind %d", bad, err, kind)
		}
	}
	_, err := v.Verify(handMade(h, `{"alg":"HS256","kid":"h1"}`, fmt.Sprintf(`{"exp":"%d"}`, exp)))
	wantKind(t, err, Malformed)
}

// RFC 7519 2 (NumericDate): seconds since the epoch, non-integer values
// allowed. golang-jwt truncates them to the second (jwt.TimePrecision), so
// an exp of t.5 ends the token at t: earlier, never later.
func TestRFC7519NumericDate(t *testing.T) {
	h := newSigner(t, "HS256")
	at := func(now time.Time) *Verifier {
		return mustVerifier(t, Config{Keys: []Key{h.key(t, "h1")}, LeewaySeconds: 0, Now: fixedNow(now)})
	}
	tok := handMade(h, `{"alg":"HS256","kid":"h1"}`, fmt.Sprintf(`{"sub":"a","exp":%d.5}`, t0.Unix()))
	wantOK(t, "before exp", func() error { _, err := at(t0.Add(-time.Second)).Verify(tok); return err }())
	for _, now := range []time.Time{t0, t0.Add(600 * time.Millisecond)} {
		_, err := at(now).Verify(tok)
		wantKind(t, err, Expired)
	}
	big := handMade(h, `{"alg":"HS256","kid":"h1"}`, `{"sub":"a","exp":1e10}`)
	wantOK(t, "exponent notation", func() error { _, err := at(t0).Verify(big); return err }())
}

// RFC 7519 4.1.5: the token is valid from nbf on (inclusive).
func TestRFC7519NotBeforeInclusive(t *testing.T) {
	s := newSigner(t, "ES256")
	c := claimsAt(t0)
	c["nbf"], c["iat"] = t0.Unix(), t0.Add(-time.Minute).Unix()
	tok := s.sign(t, "k1", c)
	if _, err := mustVerifier(t, Config{Keys: []Key{s.key(t, "k1")}, Now: fixedNow(t0)}).Verify(tok); err != nil {
		t.Fatalf("at nbf: %v", err)
	}
	_, err := mustVerifier(t, Config{Keys: []Key{s.key(t, "k1")}, Now: fixedNow(t0.Add(-time.Second))}).Verify(tok)
	wantKind(t, err, NotYetValid)
}

// RFC 7519 4.1.1 and 4.1.3: iss and aud values are compared as
// case-sensitive strings.
func TestRFC7519IssuerAndAudienceCaseSensitive(t *testing.T) {
	s := newSigner(t, "ES256")
	tok := s.sign(t, "k1", claimsAt(t0))
	for _, o := range []Config{{Issuers: []string{"https://ID.example"}}, {Audiences: []string{"Subgate"}}} {
		o.Keys, o.Now = []Key{s.key(t, "k1")}, fixedNow(t0)
		if _, err := mustVerifier(t, o).Verify(tok); err == nil {
			t.Errorf("%+v: a different case was accepted", o)
		}
	}
}

// RFC 7519 4.1.3 says a recipient that does not identify itself with a
// value of a present aud MUST reject the token. subgate checks aud only
// when the route lists audiences: documented as not followed by default.
func TestRFC7519AudienceUncheckedWithoutConfig(t *testing.T) {
	s := newSigner(t, "ES256")
	c := claimsAt(t0)
	c["aud"] = "someone-else"
	v := mustVerifier(t, Config{Keys: []Key{s.key(t, "k1")}, Now: fixedNow(t0)})
	if _, err := v.Verify(s.sign(t, "k1", c)); err != nil {
		t.Fatalf("the documented behaviour changed: %v (update the table)", err)
	}
}

// RFC 7519 4: claims a recipient does not understand are ignored.
func TestRFC7519UnknownClaimsIgnored(t *testing.T) {
	s := newSigner(t, "ES256")
	c := claimsAt(t0)
	c["https://example.com/roles"], c["nested"] = []string{"a"}, map[string]any{"deep": []any{1, "x", nil}}
	v := mustVerifier(t, Config{Keys: []Key{s.key(t, "k1")}, Now: fixedNow(t0)})
	if _, err := v.Verify(s.sign(t, "k1", c)); err != nil {
		t.Fatal(err)
	}
}

// RFC 7518 3.2: an HMAC key at least as long as the hash output.
func TestRFC7518HMACKeySizes(t *testing.T) {
	for alg, n := range map[string]int{"HS256": 32, "HS384": 48, "HS512": 64} {
		if _, err := New(Config{Keys: []Key{{Kid: "h", Algorithm: alg, Secret: strings.Repeat("k", n-1)}}}); err == nil {
			t.Errorf("%s with a %d-byte secret accepted", alg, n-1)
		}
		if _, err := New(Config{Keys: []Key{{Kid: "h", Algorithm: alg, Secret: strings.Repeat("k", n)}}}); err != nil {
			t.Errorf("%s with a %d-byte secret refused: %v", alg, n, err)
		}
	}
}

// RFC 7518 3.2: the MAC is compared in full (golang-jwt uses hmac.Equal,
// which is constant-time; the timing itself is not measured here): a MAC
// one bit off, truncated or empty does not verify.
func TestRFC7518HMACComparison(t *testing.T) {
	h, v, claims := hsFixture(t, Config{})
	good := handMade(h, `{"alg":"HS256","kid":"h1"}`, "{"+claims+"}")
	i := strings.LastIndex(good, ".")
	mac, _ := base64.RawURLEncoding.DecodeString(good[i+1:])
	flipped := append([]byte{}, mac...)
	flipped[31] ^= 1
	for name, sig := range map[string][]byte{"one bit off": flipped, "truncated": mac[:16], "empty": nil} {
		_, err := v.Verify(good[:i+1] + b64(sig))
		if err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

// RFC 7518 3.3 and 3.5: RSA keys of 2048 bits or more, for RS* and PS*,
// configured or published.
func TestRFC7518RSAKeySize(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	pemText := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	for _, alg := range []string{"RS256", "PS256"} {
		if _, err := New(Config{Keys: []Key{{Kid: "r", Algorithm: alg, PublicKey: pemText}}}); err == nil || !strings.Contains(err.Error(), "2048") {
			t.Errorf("%s with a 1024-bit key: %v", alg, err)
		}
		j := jwk{Kty: "RSA", Alg: alg, N: b64(small.N.Bytes()), E: "AQAB"}
		if _, err := j.key(); err == nil {
			t.Errorf("%s: a 1024-bit JWK accepted", alg)
		}
	}
}

// RFC 7518 3.4: an ECDSA signature is R || S, 64 octets for ES256 and 96
// for ES384; a DER signature, another length or R = S = 0 fails.
func TestRFC7518ECDSASignatureFormat(t *testing.T) {
	s := newSigner(t, "ES256")
	v := mustVerifier(t, Config{Keys: []Key{s.key(t, "k1")}, Now: fixedNow(t0)})
	good := s.sign(t, "k1", claimsAt(t0))
	i := strings.LastIndex(good, ".")
	in := good[:i]
	digest := sha256.Sum256([]byte(in))
	der, err := ecdsa.SignASN1(rand.Reader, s.priv.(*ecdsa.PrivateKey), digest[:])
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(good[i+1:])
	for name, sig := range map[string][]byte{
		"DER-encoded": der, "63 octets": raw[:63], "65 octets": append(append([]byte{}, raw...), 0),
		"R = S = 0": make([]byte, 64),
	} {
		if _, err := v.Verify(in + "." + b64(sig)); KindOf(err) != InvalidSignature {
			t.Errorf("%s: err %v, want InvalidSignature", name, err)
		}
	}
	if _, err := v.Verify(good); err != nil {
		t.Fatal(err)
	}
}

// RFC 7518 3.4 and 6.2.1.1: ES256 is P-256 and ES384 is P-384; a key of
// another curve is not used with them, configured or published.
func TestRFC7518ECCurveBinding(t *testing.T) {
	p256, p384 := newSigner(t, "ES256"), newSigner(t, "ES384")
	for alg, s := range map[string]signer{"ES384": p256, "ES256": p384} {
		if _, err := New(Config{Keys: []Key{{Kid: "e", Algorithm: alg, PublicKey: s.pubPEM}}}); err == nil {
			t.Errorf("%s accepted a key of the other curve", alg)
		}
	}
	j := ecKeyJWK("e", p256.pub.(*ecdsa.PublicKey))
	j["alg"] = "ES384"
	if _, err := parseJWKS(mustJSON(map[string]any{"keys": []any{j}})); err == nil {
		t.Error("JWK on P-256 accepted for ES384")
	}
	for _, crv := range []string{"P-521", "secp256k1", ""} {
		k := ecKeyJWK("e", p256.pub.(*ecdsa.PublicKey))
		k["crv"] = crv
		if _, err := parseJWKS(mustJSON(map[string]any{"keys": []any{k}})); err == nil {
			t.Errorf("crv %q accepted", crv)
		}
	}
}

// RFC 7518 6.2.1.2, 6.2.1.3: x and y are the full size of a coordinate of
// the curve (32 octets on P-256); a shorter one is not padded into a key.
func TestRFC7518ECCoordinateLength(t *testing.T) {
	for {
		k := genEC(t)
		b, _ := k.PublicKey.Bytes()
		if b[1] != 0 { // find a key whose x starts with 0x00 to strip
			continue
		}
		j := ecKeyJWK("e", &k.PublicKey)
		j["x"] = b64(b[2:33]) // 31 octets: the value, without its leading zero
		if _, err := parseJWKS(mustJSON(map[string]any{"keys": []any{j}})); err == nil {
			t.Fatal("a 31-octet x coordinate was accepted")
		}
		j["x"] = b64(b[1:33])
		if _, err := parseJWKS(mustJSON(map[string]any{"keys": []any{j}})); err != nil {
			t.Fatalf("the full coordinate was refused: %v", err)
		}
		return
	}
}

// RFC 7518 3.5: PS* is RSASSA-PSS with a salt as long as the hash; a
// signature with another salt length is another algorithm.
func TestRFC7518PSSSaltLength(t *testing.T) {
	s := newSigner(t, "PS256")
	v := mustVerifier(t, Config{Keys: []Key{s.key(t, "k1")}, Now: fixedNow(t0)})
	good := s.sign(t, "k1", claimsAt(t0))
	if _, err := v.Verify(good); err != nil {
		t.Fatal(err)
	}
	in := good[:strings.LastIndex(good, ".")]
	digest := sha256.Sum256([]byte(in))
	for _, salt := range []int{0, 20, 64} {
		sig, err := rsa.SignPSS(rand.Reader, rsaKey, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: salt})
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(in + "." + b64(sig))
		wantKind(t, err, InvalidSignature)
	}
}

// RFC 8037 2, 3.1: OKP keys name their curve; only Ed25519 is verified
// (Ed448 has no implementation in Go's standard library), X25519 is a key
// agreement curve and never a signature key, x is 32 octets, and a JWK
// with private material is refused.
func TestRFC8037OKPKeys(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	okp := func(mod func(j map[string]any)) map[string]any {
		j := map[string]any{"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(pub)}
		mod(j)
		return j
	}
	if k, err := parseJWKS(mustJSON(map[string]any{"keys": []any{okp(func(map[string]any) {})}})); err != nil || k["ed"].alg != "EdDSA" {
		t.Fatalf("Ed25519 JWK: %v %v", k, err)
	}
	for name, j := range map[string]map[string]any{
		"Ed448":               okp(func(j map[string]any) { j["crv"] = "Ed448"; j["x"] = b64(make([]byte, 57)) }),
		"X25519":              okp(func(j map[string]any) { j["crv"] = "X25519" }),
		"no crv":              okp(func(j map[string]any) { delete(j, "crv") }),
		"x of 31 octets":      okp(func(j map[string]any) { j["x"] = b64(pub[:31]) }),
		"private d":           okp(func(j map[string]any) { j["d"] = b64(make([]byte, 32)) }),
		"alg ES256 on an OKP": okp(func(j map[string]any) { j["alg"] = "ES256" }),
	} {
		if _, err := parseJWKS(mustJSON(map[string]any{"keys": []any{j}})); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// RFC 8037 3.1 (EdDSA as RFC 8032 defines it): a signature whose S is not
// reduced (S + L) or of the wrong length does not verify.
func TestRFC8037EdDSASignature(t *testing.T) {
	s := newSigner(t, "EdDSA")
	v := mustVerifier(t, Config{Keys: []Key{s.key(t, "k1")}, Now: fixedNow(t0)})
	good := s.sign(t, "k1", claimsAt(t0))
	if _, err := v.Verify(good); err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndex(good, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(good[i+1:])
	// S is little-endian in sig[32:]; add the group order L.
	le := func(b []byte) *big.Int {
		r := make([]byte, len(b))
		for j := range b {
			r[len(b)-1-j] = b[j]
		}
		return new(big.Int).SetBytes(r)
	}
	l, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	sl := new(big.Int).Add(le(sig[32:]), l).Bytes()
	malleable := append([]byte{}, sig[:32]...)
	for j := len(sl) - 1; j >= 0; j-- {
		malleable = append(malleable, sl[j])
	}
	malleable = append(malleable, make([]byte, 64-len(malleable))...)
	for name, bad := range map[string][]byte{"S + L": malleable, "63 octets": sig[:63]} {
		if _, err := v.Verify(good[:i+1] + b64(bad)); KindOf(err) != InvalidSignature {
			t.Errorf("%s: err %v, want InvalidSignature", name, err)
		}
	}
}

// RFC 8725 3.1: each key is used with exactly one algorithm: an RSA key
// configured for RS256 does not verify a PS256 token, and a published RSA
// key without alg is RS256 only.
func TestRFC8725OneAlgorithmPerKey(t *testing.T) {
	rs := newSigner(t, "RS256")
	v := mustVerifier(t, Config{Keys: []Key{rs.key(t, "k1")}, Now: fixedNow(t0)})
	ps := signer{alg: "PS256", priv: rsaKey}
	_, err := v.Verify(ps.sign(t, "k1", claimsAt(t0)))
	wantKind(t, err, InvalidSignature)

	j := jwk{Kty: "RSA", N: b64(rsaKey.N.Bytes()), E: "AQAB"}
	k, err := j.key()
	if err != nil || k.alg != "RS256" {
		t.Fatalf("RSA JWK without alg: %v %v", k.alg, err)
	}
}

// RFC 8725 3.4: EC points are validated: a published point off the curve
// or at infinity is refused.
func TestRFC8725InvalidCurvePoints(t *testing.T) {
	k := genEC(t)
	for name, mod := range map[string]func(j map[string]any){
		"y changed":    func(j map[string]any) { j["y"] = b64(make([]byte, 32)) },
		"point (0, 0)": func(j map[string]any) { j["x"], j["y"] = b64(make([]byte, 32)), b64(make([]byte, 32)) },
	} {
		j := ecKeyJWK("e", &k.PublicKey)
		mod(j)
		if _, err := parseJWKS(mustJSON(map[string]any{"keys": []any{j}})); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// RFC 8725 3.11 and 3.12: subgate's own kind of JWT (the payment token) is
// explicitly typed, and a verifier that does not expect that type refuses
// it, so the validation rules of the two tokens are mutually exclusive.
func TestRFC8725ExplicitTyping(t *testing.T) {
	h := newSigner(t, "HS256")
	bearer := mustVerifier(t, Config{Keys: []Key{h.key(t, "h1")}, Now: fixedNow(t0)})
	payment := mustVerifier(t, Config{Keys: []Key{h.key(t, "h1")}, Type: PaymentType, Now: fixedNow(t0)})
	claims := fmt.Sprintf(`{"sub":"a","exp":%d}`, t0.Add(time.Hour).Unix())
	typed := handMade(h, `{"alg":"HS256","kid":"h1","typ":"`+PaymentType+`"}`, claims)
	plain := handMade(h, `{"alg":"HS256","kid":"h1","typ":"JWT"}`, claims)
	at := handMade(h, `{"alg":"HS256","kid":"h1","typ":"at+jwt"}`, claims)
	_, err := bearer.Verify(typed)
	wantKind(t, err, Malformed)
	_, err = payment.Verify(plain)
	wantKind(t, err, Malformed)
	for _, tok := range []string{plain, at} {
		if _, err := bearer.Verify(tok); err != nil {
			t.Errorf("bearer token refused: %v", err)
		}
	}
	if _, err := payment.Verify(typed); err != nil {
		t.Errorf("payment token refused: %v", err)
	}
	var hdr map[string]any
	_ = json.Unmarshal([]byte(`{"typ":"APPLICATION/`+strings.ToUpper(PaymentType)+`"}`), &hdr)
	if checkType(hdr, "") == nil {
		t.Error("the payment type in another spelling passed a bearer verifier")
	}
}

// RFC 8725 3.9: with audiences configured, a token without aud is refused
// as surely as one for another audience.
func TestRFC8725AudienceRequiredWhenConfigured(t *testing.T) {
	s := newSigner(t, "ES256")
	v := mustVerifier(t, Config{Keys: []Key{s.key(t, "k1")}, Audiences: []string{"subgate"}, Now: fixedNow(t0)})
	for name, aud := range map[string]any{"absent": nil, "another": "other", "empty array": []string{}} {
		c := claimsAt(t0)
		if aud == nil {
			delete(c, "aud")
		} else {
			c["aud"] = aud
		}
		if _, err := v.Verify(s.sign(t, "k1", c)); KindOf(err) != AudienceInvalid {
			t.Errorf("%s: %v", name, err)
		}
	}
}
