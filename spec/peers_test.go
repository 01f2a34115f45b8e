package spec

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/subgate/subgate/docker/demosvc"
	"github.com/subgate/subgate/pkg/redistest"
)

// Peer test suites as data (spec/testdata/peers/*.json, one file per
// source): the cases of Kong's jwt plugin, Envoy's jwt_authn, golang-jwt,
// go-jose, RFC 7520 and the public attack catalogues, each with its keys,
// its token (literal, or a recipe signed at run time so that expiring
// tokens follow the clock), the jwt-claims config it runs under, subgate's
// expected answer and the peer's own. Every case runs through the compiled
// jwt-claims binary in the stand-in; literal vectors can also have their
// signature checked on their own, to show the transcribed key and token
// agree even where subgate refuses the token for another reason.

// peerFile is one source's cases.
type peerFile struct {
	// Plugin is the binary the cases run through: jwt-claims (the default)
	// or payment-token, whose routes run jwt-claims first with a good bearer
	// token for "alice" ($bearer) and read the case's token from
	// X-Payment-Token.
	Plugin string             `json:"plugin"`
	Source string             `json:"source"`
	Origin string             `json:"origin"` // repository@ref or document, and the paths the cases come from
	Notes  string             `json:"notes"`
	Keys   map[string]peerKey `json:"keys"`
	// Routes are jwt-claims configs by name. A keys[] entry names its key
	// material with "key"; the runner turns it into public_key, secret or
	// secret_file (binary secrets).
	Routes map[string]map[string]any `json:"routes"`
	Cases  []peerCase                `json:"cases"`
}

// peerKey is key material: generated at run time, or a published vector.
type peerKey struct {
	Gen    string         `json:"gen"`      // rsa2048, ec-p256, ec-p384, ec-p521, ed25519, empty_secret
	JWK    map[string]any `json:"jwk"`      // public or private JWK (RSA, EC, oct, OKP)
	PEM    string         `json:"pem"`      // PUBLIC KEY or a private key
	SPKI   string         `json:"spki_b64"` // base64 DER SubjectPublicKeyInfo
	Secret string         `json:"secret"`   // HMAC secret as text
	// Verbatim goes into public_key as it is: key material that is not a key.
	Verbatim string `json:"verbatim_public_key"`
	Comment  string `json:"comment"`
}

type peerCase struct {
	Ref         string       `json:"ref"` // file and test or section in the source
	Description string       `json:"description"`
	Route       string       `json:"route"`
	Token       peerToken    `json:"token"`
	Request     *peerRequest `json:"request"` // default: Authorization: Bearer $token
	Expect      peerExpect   `json:"expect"`
	Peer        peerOutcome  `json:"peer"`
	// Signature, for literal tokens: whether the signature verifies under
	// the named key with the token's alg, checked with golang-jwt's
	// signing method on its own (no claims, no config).
	Signature *peerSignature `json:"signature"`
}

type peerToken struct {
	Literal    string         `json:"literal"`
	Header     map[string]any `json:"header"`
	HeaderRaw  string         `json:"header_raw"` // exact header JSON (duplicates, odd spacing)
	Claims     map[string]any `json:"claims"`     // "$now", "$now+N", "$now-N" become NumericDates
	PayloadRaw string         `json:"payload_raw"`
	Sign       *peerSign      `json:"sign"`
	Mangle     []string       `json:"mangle"`
}

type peerSign struct {
	Alg string `json:"alg"` // the method that signs, whatever the header says
	Key string `json:"key"`
	// As "public_pem_hmac": the HMAC secret is the key's public PEM (the
	// algorithm-confusion attack).
	As string `json:"as"`
}

type peerRequest struct {
	Method  string              `json:"method"`
	Query   string              `json:"query"`
	Headers map[string][]string `json:"headers"`
}

type peerExpect struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	// Upstream header values the allowed request must carry.
	Upstream map[string]string `json:"upstream"`
}

type peerOutcome struct {
	Outcome string `json:"outcome"` // allow or deny
	Status  int    `json:"status"`
	Detail  string `json:"detail"`
	Why     string `json:"why"` // required when subgate's outcome or status differs
}

type peerSignature struct {
	Key   string `json:"key"`
	Valid bool   `json:"valid"`
	Alg   string `json:"alg"` // the method to check with, when not the header's
}

// peerKeys is a file's key material, resolved.
type peerKeys map[string]resolvedKey

type resolvedKey struct {
	priv     any // crypto.Signer or []byte (HMAC); nil for public-only keys
	pub      crypto.PublicKey
	secret   []byte // HMAC
	verbatim string
}

func genKey(kind string) (any, error) {
	switch kind {
	case "rsa2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "ec-p256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ec-p384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ec-p521":
		return ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("unknown key recipe %q", kind)
}

func b64big(s any) (*big.Int, error) {
	str, _ := s.(string)
	b, err := base64.RawURLEncoding.DecodeString(str)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("bad base64url integer %q", str)
	}
	return new(big.Int).SetBytes(b), nil
}

var jwkCurves = map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}

// jwkKey reads a JWK; the runner's own reader, so that the plugin's JWK
// code is not what checks itself.
func jwkKey(j map[string]any) (resolvedKey, error) {
	switch j["kty"] {
	case "oct":
		k, err := base64.RawURLEncoding.DecodeString(j["k"].(string))
		return resolvedKey{secret: k, priv: k}, err
	case "RSA":
		n, err1 := b64big(j["n"])
		e, err2 := b64big(j["e"])
		if err1 != nil || err2 != nil {
			return resolvedKey{}, fmt.Errorf("RSA JWK: %v %v", err1, err2)
		}
		pub := &rsa.PublicKey{N: n, E: int(e.Int64())}
		if _, ok := j["d"]; !ok {
			return resolvedKey{pub: pub}, nil
		}
		priv := &rsa.PrivateKey{PublicKey: *pub}
		var err error
		if priv.D, err = b64big(j["d"]); err != nil {
			return resolvedKey{}, err
		}
		p, err1 := b64big(j["p"])
		q, err2 := b64big(j["q"])
		if err1 != nil || err2 != nil {
			return resolvedKey{}, fmt.Errorf("RSA JWK primes: %v %v", err1, err2)
		}
		priv.Primes = []*big.Int{p, q}
		if err := priv.Validate(); err != nil {
			return resolvedKey{}, err
		}
		priv.Precompute()
		return resolvedKey{pub: pub, priv: priv}, nil
	case "EC":
		curve, ok := jwkCurves[fmt.Sprint(j["crv"])]
		if !ok {
			return resolvedKey{}, fmt.Errorf("EC JWK: curve %v", j["crv"])
		}
		x, err1 := b64big(j["x"])
		y, err2 := b64big(j["y"])
		if err1 != nil || err2 != nil {
			return resolvedKey{}, fmt.Errorf("EC JWK: %v %v", err1, err2)
		}
		size := (curve.Params().BitSize + 7) / 8
		point := append([]byte{4}, append(x.FillBytes(make([]byte, size)), y.FillBytes(make([]byte, size))...)...)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return resolvedKey{}, err
		}
		if _, ok := j["d"]; !ok {
			return resolvedKey{pub: pub}, nil
		}
		d, err := base64.RawURLEncoding.DecodeString(fmt.Sprint(j["d"]))
		if err != nil {
			return resolvedKey{}, err
		}
		priv, err := ecdsa.ParseRawPrivateKey(curve, append(make([]byte, size-len(d)), d...))
		if err != nil {
			return resolvedKey{}, err
		}
		if !priv.PublicKey.Equal(pub) {
			return resolvedKey{}, fmt.Errorf("EC JWK: d does not match x, y")
		}
		return resolvedKey{pub: pub, priv: priv}, nil
	case "OKP":
		x, err := base64.RawURLEncoding.DecodeString(fmt.Sprint(j["x"]))
		if err != nil || j["crv"] != "Ed25519" {
			return resolvedKey{}, fmt.Errorf("OKP JWK: %v %v", j["crv"], err)
		}
		return resolvedKey{pub: ed25519.PublicKey(x)}, nil
	}
	return resolvedKey{}, fmt.Errorf("JWK kty %v", j["kty"])
}

func resolveKey(k peerKey) (resolvedKey, error) {
	switch {
	case k.Verbatim != "":
		return resolvedKey{verbatim: k.Verbatim}, nil
	case k.Gen == "empty_secret": // what a traversal to /dev/null reads
		return resolvedKey{secret: []byte{}, priv: []byte{}}, nil
	case k.Gen != "":
		priv, err := genKey(k.Gen)
		if err != nil {
			return resolvedKey{}, err
		}
		return resolvedKey{priv: priv, pub: priv.(crypto.Signer).Public()}, nil
	case k.JWK != nil:
		return jwkKey(k.JWK)
	case k.Secret != "":
		return resolvedKey{secret: []byte(k.Secret), priv: []byte(k.Secret)}, nil
	case k.SPKI != "":
		der, err := base64.StdEncoding.DecodeString(k.SPKI)
		if err != nil {
			return resolvedKey{}, err
		}
		pub, err := x509.ParsePKIXPublicKey(der)
		return resolvedKey{pub: pub}, err
	case k.PEM != "":
		block, _ := pem.Decode([]byte(k.PEM))
		if block == nil {
			return resolvedKey{}, fmt.Errorf("not PEM")
		}
		if pub, err := x509.ParsePKIXPublicKey(block.Bytes); err == nil {
			return resolvedKey{pub: pub}, nil
		}
		priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return resolvedKey{}, err
		}
		return resolvedKey{priv: priv, pub: priv.(crypto.Signer).Public()}, nil
	}
	return resolvedKey{}, fmt.Errorf("no key material")
}

func (k resolvedKey) publicPEM() (string, error) {
	der, err := x509.MarshalPKIXPublicKey(k.pub)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// publicJWK is the key as a header's embedded "jwk" would carry it.
func (k resolvedKey) publicJWK() map[string]any {
	enc := base64.RawURLEncoding.EncodeToString
	if k.secret != nil { // a symmetric key as a JWKS might (wrongly) publish it
		return map[string]any{"kty": "oct", "k": enc(k.secret)}
	}
	switch p := k.pub.(type) {
	case *rsa.PublicKey:
		return map[string]any{"kty": "RSA", "n": enc(p.N.Bytes()), "e": enc(big.NewInt(int64(p.E)).Bytes())}
	case *ecdsa.PublicKey:
		b, _ := p.Bytes()
		size := (len(b) - 1) / 2
		return map[string]any{"kty": "EC", "crv": p.Curve.Params().Name, "x": enc(b[1 : 1+size]), "y": enc(b[1+size:])}
	case ed25519.PublicKey:
		return map[string]any{"kty": "OKP", "crv": "Ed25519", "x": enc(p)}
	}
	return nil
}

// peerEnv is what substitutions in a case can name.
type peerEnv struct {
	now  time.Time
	evil string // URL of a server counting fetches
	keys peerKeys
}

var nowExpr = regexp.MustCompile(`^\$now([+-]\d+)?$`)

// subst replaces "$now±N" with a NumericDate, "$evil" in strings with the
// fetch-counting server's URL, "$jwk:<key>" with that key's public JWK and
// "$x5c:<key>" with a one-certificate chain self-signed by that key.
func (e peerEnv) subst(v any) (any, error) {
	switch x := v.(type) {
	case string:
		if m := nowExpr.FindStringSubmatch(x); m != nil {
			off, _ := strconv.ParseInt(strings.TrimPrefix(m[1], "+"), 10, 64)
			return e.now.Unix() + off, nil
		}
		if name, ok := strings.CutPrefix(x, "$x5c:"); ok {
			k, found := e.keys[name]
			if !found {
				return nil, fmt.Errorf("unknown key %q", name)
			}
			der, err := selfSigned(k.priv)
			if err != nil {
				return nil, err
			}
			return []any{base64.StdEncoding.EncodeToString(der)}, nil
		}
		if name, ok := strings.CutPrefix(x, "$jwk:"); ok {
			k, found := e.keys[name]
			if !found {
				return nil, fmt.Errorf("unknown key %q", name)
			}
			return k.publicJWK(), nil
		}
		return strings.ReplaceAll(x, "$evil", e.evil), nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			s, err := e.subst(val)
			if err != nil {
				return nil, err
			}
			out[k] = s
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			s, err := e.subst(val)
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return out, nil
	}
	return v, nil
}

func (e peerEnv) segment(obj map[string]any, raw string) (string, error) {
	if raw != "" {
		return b64url(raw), nil
	}
	v, err := e.subst(obj)
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b), err
}

// build makes the case's token.
func (e peerEnv) build(t peerToken) (string, error) {
	tok, err := e.signed(t)
	if err != nil {
		return "", err
	}
	for _, m := range t.Mangle {
		if tok, err = mangle(tok, m); err != nil {
			return "", err
		}
	}
	return tok, nil
}

func (e peerEnv) signed(t peerToken) (string, error) {
	if t.Literal != "" {
		return t.Literal, nil
	}
	h, err := e.segment(t.Header, t.HeaderRaw)
	if err != nil {
		return "", err
	}
	p, err := e.segment(t.Claims, t.PayloadRaw)
	if err != nil {
		return "", err
	}
	input := h + "." + p
	sig := ""
	if t.Sign != nil {
		k, ok := e.keys[t.Sign.Key]
		if !ok && t.Sign.Alg != "none" {
			return "", fmt.Errorf("unknown key %q", t.Sign.Key)
		}
		var key any = k.priv
		if t.Sign.As == "public_pem_hmac" {
			s, err := k.publicPEM()
			if err != nil {
				return "", err
			}
			key = []byte(s)
		}
		if t.Sign.Alg != "none" {
			m := jwt.GetSigningMethod(t.Sign.Alg)
			if m == nil {
				return "", fmt.Errorf("unknown signing alg %q", t.Sign.Alg)
			}
			b, err := m.Sign(input, key)
			if err != nil {
				return "", fmt.Errorf("signing %s: %w", t.Sign.Alg, err)
			}
			sig = base64.RawURLEncoding.EncodeToString(b)
		}
	}
	return input + "." + sig, nil
}

// mangle applies one named change to a finished token.
func mangle(tok, op string) (string, error) {
	parts := strings.Split(tok, ".")
	name, arg, _ := strings.Cut(op, ":")
	switch name {
	case "drop_signature": // keep the last dot: header.payload.
		parts[len(parts)-1] = ""
	case "flip_signature": // change the signature's first byte
		b, err := base64.RawURLEncoding.DecodeString(parts[2])
		if err != nil || len(b) == 0 {
			return "", fmt.Errorf("flip_signature: no signature")
		}
		b[0] ^= 1
		parts[2] = base64.RawURLEncoding.EncodeToString(b)
	case "zero_signature": // arg bytes of zeros
		n, err := strconv.Atoi(arg)
		if err != nil {
			return "", err
		}
		parts[2] = base64.RawURLEncoding.EncodeToString(make([]byte, n))
	case "pad_header":
		parts[0] += "=="
	case "std_base64_signature": // '+' and '/' instead of '-' and '_', with padding
		b, err := base64.RawURLEncoding.DecodeString(parts[2])
		if err != nil {
			return "", err
		}
		parts[2] = base64.StdEncoding.EncodeToString(b)
	case "prefix":
		return arg + tok, nil
	case "suffix":
		return tok + arg, nil
	case "two_segments":
		return parts[0] + "." + parts[1], nil
	case "drop_payload": // header..signature (detached content)
		parts[1] = ""
	default:
		return "", fmt.Errorf("unknown mangle %q", op)
	}
	return strings.Join(parts, "."), nil
}

// loadPeerFiles reads every file under spec/testdata/peers strictly: an
// unknown field is an error, so a misspelt expectation cannot go unchecked.
func loadPeerFiles(t *testing.T) map[string]*peerFile {
	t.Helper()
	paths, err := filepath.Glob("testdata/peers/*.json")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no peer data files: %v", err)
	}
	files := map[string]*peerFile{}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		d := json.NewDecoder(bytes.NewReader(raw))
		d.DisallowUnknownFields()
		f := &peerFile{}
		if err := d.Decode(f); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if f.Source == "" || f.Origin == "" || len(f.Cases) == 0 {
			t.Fatalf("%s: a data file needs a source, an origin and at least one case", p)
		}
		files[strings.TrimSuffix(filepath.Base(p), ".json")] = f
	}
	return files
}

// checkCaseData holds each case to the format's rules before anything runs.
func checkCaseData(f *peerFile, c peerCase) error {
	switch {
	case c.Ref == "" || c.Description == "":
		return fmt.Errorf("a case needs a ref and a description")
	case f.Routes[c.Route] == nil:
		return fmt.Errorf("unknown route %q", c.Route)
	case c.Expect.Status == 0 || (c.Expect.Status != 200) != (c.Expect.Code != ""):
		return fmt.Errorf("expect needs a status, and a code exactly when it denies")
	case c.Peer.Outcome != "allow" && c.Peer.Outcome != "deny":
		return fmt.Errorf("peer.outcome must be allow or deny")
	}
	ours := "deny"
	if c.Expect.Status == 200 {
		ours = "allow"
	}
	differs := ours != c.Peer.Outcome || (c.Peer.Status != 0 && c.Peer.Status != c.Expect.Status)
	if differs && c.Peer.Why == "" {
		return fmt.Errorf("subgate's outcome (%s %d) differs from the peer's (%s %d): say why", ours, c.Expect.Status, c.Peer.Outcome, c.Peer.Status)
	}
	if !differs && c.Peer.Why != "" {
		return fmt.Errorf("peer.why is for outcomes that differ; this one agrees")
	}
	return nil
}

// routeConfig turns a data route into the jwt-claims config Kong sends:
// each key reference becomes public_key, secret, or (for a binary secret,
// which a JSON config string cannot carry) secret_file. A "jwks" list
// becomes a JWKS document the runner serves, and jwks_url points at it.
func routeConfig(t *testing.T, dir string, keys peerKeys, name string, route map[string]any, jwks *jwksServer) map[string]any {
	t.Helper()
	out := map[string]any{}
	for k, v := range route {
		out[k] = v
	}
	if list, ok := route["jwks"].([]any); ok {
		delete(out, "jwks")
		doc := []map[string]any{}
		for i, item := range list {
			entry := item.(map[string]any)
			ref, _ := entry["key"].(string)
			k, found := keys[ref]
			if !found {
				t.Fatalf("route %s jwks[%d]: unknown key %q", name, i, ref)
			}
			jwk := k.publicJWK()
			for f, v := range entry {
				if f != "key" {
					jwk[f] = v
				}
			}
			doc = append(doc, jwk)
		}
		out["jwks_url"] = jwks.add(name, doc)
	}
	list, _ := route["keys"].([]any)
	resolved := make([]any, 0, len(list))
	for i, item := range list {
		entry := map[string]any{}
		for k, v := range item.(map[string]any) {
			entry[k] = v
		}
		ref, _ := entry["key"].(string)
		delete(entry, "key")
		k, ok := keys[ref]
		switch {
		case !ok:
			t.Fatalf("route %s keys[%d]: unknown key %q", name, i, ref)
		case k.verbatim != "":
			entry["public_key"] = k.verbatim
		case k.secret != nil && utf8.Valid(k.secret) && len(k.secret) >= minHMAC[fmt.Sprint(entry["algorithm"])]:
			entry["secret"] = string(k.secret)
		case k.secret != nil:
			if k.secret[len(k.secret)-1] == '\n' || k.secret[len(k.secret)-1] == '\r' {
				t.Fatalf("key %q ends in a line break, which secret_file trims", ref)
			}
			path := filepath.Join(dir, fmt.Sprintf("%s-%d.key", name, i))
			if err := os.WriteFile(path, k.secret, 0o600); err != nil {
				t.Fatal(err)
			}
			entry["secret_file"] = path
		default:
			p, err := k.publicPEM()
			if err != nil {
				t.Fatalf("key %q: %v", ref, err)
			}
			entry["public_key"] = p
		}
		resolved = append(resolved, entry)
	}
	if list != nil {
		out["keys"] = resolved
	}
	return out
}

// minHMAC is the shortest secret per HMAC algorithm (RFC 7518 3.2). Kong
// refuses a config whose literal secret is shorter at load (the schema's
// conditional checks: pkg/jwtverify Key.EntityChecks), which would refuse
// a peer file's whole kong.yml; such a secret goes in a file instead, which
// only the plugin measures, at instance start: the 500 these cases expect.
var minHMAC = map[string]int{"HS256": 32, "HS384": 48, "HS512": 64}

// The peers' cases through the real jwt-claims binary: one plugin server
// and one gateway for every source, a route per config, each case's
// status and denial code compared with the data. A file without cases, a
// case whose data breaks the format, or a case not run fails the test.
func TestPeerSuites(t *testing.T) {
	eachGateway(t, func(t *testing.T, kong string) { runPeerFiles(t, kong, pluginFiles(t, "jwt-claims"), "") })
}

// The payment-token files: the same runner, the payment-token binary after
// jwt-claims, and a real redis-server for its revocation feed.
func TestPeerSuitesPaymentToken(t *testing.T) {
	files := pluginFiles(t, "payment-token")
	eachGateway(t, func(t *testing.T, kong string) {
		redis := redistest.Start(t)
		runPeerFiles(t, kong, files, redis.Addr)
	})
}

func pluginFiles(t *testing.T, plugin string) map[string]*peerFile {
	out := map[string]*peerFile{}
	for n, f := range loadPeerFiles(t) {
		p := f.Plugin
		if p == "" {
			p = "jwt-claims"
		}
		if p != "jwt-claims" && p != "payment-token" {
			t.Fatalf("%s: unknown plugin %q", n, f.Plugin)
		}
		if p == plugin {
			out[n] = f
		}
	}
	if len(out) == 0 {
		t.Fatalf("no peer data files for %s", plugin)
	}
	return out
}

// payBearerKid is the jwt-claims key that signs $bearer on payment routes.
const payBearerKid = "peers-bearer"

func runPeerFiles(t *testing.T, kong string, files map[string]*peerFile, redisAddr string) {
	var fetches atomic.Int64
	evil := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { fetches.Add(1) }))
	defer evil.Close()
	upstream := httptest.NewServer(demosvc.Echo())
	defer upstream.Close()
	jwks := &jwksServer{docs: map[string][]byte{}}
	jwks.srv = httptest.NewServer(jwks)
	defer jwks.srv.Close()

	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	envs := map[string]peerEnv{}
	dir := t.TempDir()
	var routes strings.Builder
	plugins := []string{"jwt-claims"}
	if redisAddr != "" {
		plugins = append(plugins, "payment-token")
	}
	for _, n := range names {
		f := files[n]
		env := peerEnv{evil: evil.URL, keys: peerKeys{}}
		for kn, k := range f.Keys {
			r, err := resolveKey(k)
			if err != nil {
				t.Fatalf("%s: key %q: %v", n, kn, err)
			}
			env.keys[kn] = r
		}
		envs[n] = env
		for rn, r := range f.Routes {
			cfg := routeConfig(t, dir, env.keys, n+"-"+rn, r, jwks)
			chain := ""
			if redisAddr != "" {
				cfg["redis"] = map[string]any{"addresses": []string{redisAddr}}
				chain = fmt.Sprintf("          - name: jwt-claims\n            config: {keys: [{kid: %s, algorithm: HS256, secret: %q}]}\n", payBearerKid, obsSecret)
			}
			b, err := json.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&routes, "      - name: %s-%s\n        paths: [/%s/%s]\n        plugins:\n%s          - name: %s\n            config: %s\n", n, rn, n, rn, chain, plugins[len(plugins)-1], b)
		}
	}
	o := observeOn(t, kong, fmt.Sprintf("_format_version: \"3.0\"\nservices:\n  - name: echo\n    url: %s\n    routes:\n%s", upstream.URL, routes.String()), plugins...)
	bearer := ""
	if redisAddr != "" {
		bearer = sign(jwt.SigningMethodHS256, []byte(obsSecret), payBearerKid, map[string]any{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	}

	ran := map[string]int{}
	for _, n := range names {
		f := files[n]
		for i, c := range f.Cases {
			label := fmt.Sprintf("%s/%d %s", n, i+1, c.Description)
			if err := checkCaseData(f, c); err != nil {
				t.Errorf("%s: %v", label, err)
				continue
			}
			env := envs[n]
			env.now = time.Now() // per case: key generation before may have taken a while
			tok, err := env.build(c.Token)
			if err != nil {
				t.Errorf("%s: building the token: %v", label, err)
				continue
			}
			if c.Signature != nil {
				if err := checkSignature(envs[n].keys, c.Signature, tok); err != nil {
					t.Errorf("%s: %v", label, err)
				}
			}
			rec := peerRequestDo(o, "/"+n+"/"+c.Route, c.Request, tok, bearer)
			// A payment route answers 503 revocation_state_stale until its
			// follower has read the stream once (fail closed): wait for it.
			for deadline := time.Now().Add(10 * time.Second); redisAddr != "" && c.Expect.Code != "revocation_state_stale" &&
				strings.Contains(rec.Body.String(), `"code":"revocation_state_stale"`) && time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond)
				rec = peerRequestDo(o, "/"+n+"/"+c.Route, c.Request, tok, bearer)
			}
			ran[n]++
			var body struct {
				Code string `json:"code"`
			}
			_ = json.Unmarshal(rec.Body.Bytes(), &body)
			if rec.Code != c.Expect.Status || body.Code != c.Expect.Code {
				t.Errorf("%s (%s): got %d %q, want %d %q; body %s", label, c.Ref, rec.Code, body.Code, c.Expect.Status, c.Expect.Code, rec.Body)
				continue
			}
			if len(c.Expect.Upstream) > 0 {
				var echoed struct {
					Headers map[string]string `json:"headers"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &echoed); err != nil {
					t.Errorf("%s: upstream echo: %v", label, err)
					continue
				}
				for h, want := range c.Expect.Upstream {
					if got := echoed.Headers[h]; got != want {
						t.Errorf("%s: upstream %s = %q, want %q", label, h, got, want)
					}
				}
			}
		}
	}
	for _, n := range names {
		if ran[n] != len(files[n].Cases) {
			t.Errorf("%s: %d of %d cases ran", n, ran[n], len(files[n].Cases))
		}
		t.Logf("%-16s %3d cases (%s)", n, ran[n], files[n].Source)
	}
	if n := fetches.Load(); n != 0 {
		t.Fatalf("the gateway fetched a URL named in a token %d times", n)
	}
}

// sign makes an HMAC or asymmetric JWT with a kid (the payment routes'
// bearer token).
func sign(m jwt.SigningMethod, key any, kid string, claims map[string]any) string {
	tok := jwt.NewWithClaims(m, jwt.MapClaims(claims))
	tok.Header["kid"] = kid
	out, err := tok.SignedString(key)
	if err != nil {
		panic(err)
	}
	return out
}

// jwksServer serves the routes' JWKS documents, one path per route.
type jwksServer struct {
	srv  *httptest.Server
	docs map[string][]byte // written before the gateway loads, read-only after
}

func (j *jwksServer) add(name string, keys []map[string]any) string {
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		panic(err)
	}
	j.docs["/"+name] = b
	return j.srv.URL + "/" + name
}

func (j *jwksServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, ok := j.docs[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func peerRequestDo(o *observed, path string, r *peerRequest, tok, bearer string) *httptest.ResponseRecorder {
	switch {
	case r == nil && bearer != "":
		r = &peerRequest{Headers: map[string][]string{"Authorization": {"Bearer $bearer"}, "X-Payment-Token": {"$token"}}}
	case r == nil:
		r = &peerRequest{Headers: map[string][]string{"Authorization": {"Bearer $token"}}}
	}
	method := r.Method
	if method == "" {
		method = "GET"
	}
	if r.Query != "" {
		path += "?" + strings.ReplaceAll(r.Query, "$token", tok)
	}
	req := httptest.NewRequest(method, path, nil)
	for h, vals := range r.Headers {
		for _, v := range vals {
			req.Header.Add(h, strings.NewReplacer("$token", tok, "$bearer", bearer).Replace(v))
		}
	}
	rec := httptest.NewRecorder()
	o.ServeHTTP(rec, req)
	return rec
}

// checkSignature verifies a literal token's signature alone, with the
// signing method its header names.
func checkSignature(keys peerKeys, s *peerSignature, tok string) error {
	k, ok := keys[s.Key]
	if !ok {
		return fmt.Errorf("signature: unknown key %q", s.Key)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return fmt.Errorf("signature: not a compact JWS")
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return fmt.Errorf("signature: header: %v", err)
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return fmt.Errorf("signature: header: %v", err)
	}
	if s.Alg != "" {
		h.Alg = s.Alg
	}
	m := jwt.GetSigningMethod(h.Alg)
	if m == nil {
		return fmt.Errorf("signature: unknown alg %q", h.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return fmt.Errorf("signature: %v", err)
	}
	var key any = k.pub
	if k.secret != nil {
		key = k.secret
	}
	err = m.Verify(parts[0]+"."+parts[1], sig, key)
	if (err == nil) != s.Valid {
		return fmt.Errorf("signature under %q: verify error %v, want valid=%v", s.Key, err, s.Valid)
	}
	return nil
}

// selfSigned is a throwaway certificate for key, as an attacker would make.
func selfSigned(key any) ([]byte, error) {
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("x5c needs a private key")
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	return x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// The format's rules hold: a case whose outcome differs from its peer's
// must say why, one that agrees must not, a denial names its code, and the
// route exists. (Empty files and cases that do not run fail TestPeerSuites.)
func TestPeerDataRules(t *testing.T) {
	f := &peerFile{Routes: map[string]map[string]any{"r": {}}}
	good := peerCase{Ref: "x", Description: "y", Route: "r", Expect: peerExpect{Status: 401, Code: "token_expired"}, Peer: peerOutcome{Outcome: "deny"}}
	if err := checkCaseData(f, good); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*peerCase){
		"differs without why":        func(c *peerCase) { c.Peer.Outcome = "allow" },
		"status differs without why": func(c *peerCase) { c.Peer.Status = 403 },
		"agrees with a why":          func(c *peerCase) { c.Peer.Why = "because" },
		"deny without a code":        func(c *peerCase) { c.Expect.Code = "" },
		"allow with a code":          func(c *peerCase) { c.Expect.Status = 200 },
		"unknown route":              func(c *peerCase) { c.Route = "nope" },
		"no peer outcome":            func(c *peerCase) { c.Peer.Outcome = "" },
		"no ref":                     func(c *peerCase) { c.Ref = "" },
	} {
		c := good
		mod(&c)
		if checkCaseData(f, c) == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
