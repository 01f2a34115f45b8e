package jwtverify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/subgate/subgate/pkg/config"
)

// Key is one statically configured verification key (a Kong config record).
type Key struct {
	Kid        string `json:"kid" doc:"Matched against the token's kid header; a key without kid (left out: Kong refuses an empty string) matches tokens without one."`
	Algorithm  string `json:"algorithm" kong:"required,one_of=$algorithms" doc:"The one algorithm this key accepts; the token never chooses it."`
	PublicKey  string `json:"public_key" doc:"PEM public key (PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE) for asymmetric algorithms."`
	Secret     string `json:"secret" kong:"referenceable" doc:"HS* secret, best as a Kong vault reference such as {vault://env/SUBGATE_HS_SECRET}."`
	SecretFile string `json:"secret_file" doc:"File holding the HS* secret, read at instance start."`
	SecretEnv  string `json:"secret_env" doc:"Environment variable holding the HS* secret; it must be declared in nginx_main_env."`
}

// EntityChecks, in Kong's schema so that Kong refuses the key at load: a
// key is either public or secret, never both; an HMAC algorithm takes a
// secret, the others public_key; a secret written in the config is long
// enough for its algorithm (one from a file or the environment is
// measured at instance start, a vault reference once Kong resolved it).
func (Key) EntityChecks() []config.Check {
	hmac, public := algorithmsBy(func(a algorithm) bool { return a.minSecret > 0 })
	checks := []config.Check{
		config.MutuallyExclusive("public_key", "secret", "secret_file", "secret_env"),
		config.ConditionalAtLeastOneOf("algorithm", config.Match{OneOf: hmac}, []string{"secret", "secret_file", "secret_env"},
			"an HMAC algorithm takes a secret, not public_key: set one of %s",
			&config.Match{OneOf: public}, []string{"public_key"}, "a public-key algorithm takes %s, not a secret"),
	}
	for _, alg := range hmac {
		n := algorithms[alg].minSecret
		checks = append(checks, config.Conditional("algorithm", config.Match{Eq: alg}, "secret", config.Match{LenMin: config.N(n)},
			fmt.Sprintf("an %s secret has at least %d bytes (RFC 7518 3.2)", alg, n)))
	}
	return checks
}

// algorithmsBy splits Algorithms, in order, by pred.
func algorithmsBy(pred func(algorithm) bool) (yes, no []string) {
	for _, alg := range Algorithms {
		if pred(algorithms[alg]) {
			yes = append(yes, alg)
		} else {
			no = append(no, alg)
		}
	}
	return yes, no
}

// Check is what Kong's schema cannot say about a key: a secret has exactly
// one source (Kong skips its check when one is a vault reference); a
// public key is PEM that fits the algorithm.
func (k Key) Check() error {
	if algorithms[k.Algorithm].minSecret > 0 {
		return k.secret("secret").Sources()
	}
	_, err := k.public()
	return err
}

func (k Key) secret(field string) config.Secret {
	return config.Secret{Field: field, Value: k.Secret, File: k.SecretFile, Env: k.SecretEnv}
}

// public is the asymmetric key, checked against its algorithm.
func (k Key) public() (key, error) {
	pub, err := parsePublicPEM(k.PublicKey)
	if err != nil {
		return key{}, err
	}
	return publicKey(k.Algorithm, pub)
}

// algorithm is what a JWS alg demands of its key. This table is the one
// place that knows the algorithms: which exist, which key fits which, and
// how long an HMAC secret must be.
type algorithm struct {
	minSecret int // HMAC: RFC 7518 3.2, at least the hash size; 0 for asymmetric
	fits      func(crypto.PublicKey) bool
}

func isRSA(p crypto.PublicKey) bool { _, ok := p.(*rsa.PublicKey); return ok }
func onCurve(c elliptic.Curve) func(crypto.PublicKey) bool {
	return func(p crypto.PublicKey) bool { k, ok := p.(*ecdsa.PublicKey); return ok && k.Curve == c }
}

var algorithms = map[string]algorithm{
	"HS256": {minSecret: 32}, "HS384": {minSecret: 48}, "HS512": {minSecret: 64},
	"RS256": {fits: isRSA}, "RS384": {fits: isRSA}, "RS512": {fits: isRSA},
	"PS256": {fits: isRSA}, "PS384": {fits: isRSA}, "PS512": {fits: isRSA},
	"ES256": {fits: onCurve(elliptic.P256())}, "ES384": {fits: onCurve(elliptic.P384())}, "ES512": {fits: onCurve(elliptic.P521())},
	"EdDSA": {fits: func(p crypto.PublicKey) bool { _, ok := p.(ed25519.PublicKey); return ok }},
}

// Algorithms lists every algorithm a key may be configured with, in the
// order a key type's default is chosen (RS256 for RSA, by curve for EC).
// "none" is not among them, ever.
var Algorithms = config.Enum("algorithms", []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})

// minRSABytes: RSA keys under 2048 bits are refused (RFC 7518 3.3).
const minRSABytes = 256

// key is a verification key ready for golang-jwt: the algorithm fixed for
// it and key material of the type that algorithm's method expects.
type key struct {
	alg string
	pub any // crypto.PublicKey, or []byte for HMAC
}

// publicKey checks that pub can be used with alg: the pairing that makes
// the accepted algorithm a property of the key.
func publicKey(alg string, pub crypto.PublicKey) (key, error) {
	a, ok := algorithms[alg]
	if !ok || a.fits == nil || !a.fits(pub) {
		return key{}, fmt.Errorf("algorithm %q does not fit a %T key", alg, pub)
	}
	if r, ok := pub.(*rsa.PublicKey); ok && r.Size() < minRSABytes {
		return key{}, fmt.Errorf("RSA key of %d bits is too short (2048 minimum)", r.N.BitLen())
	}
	return key{alg: alg, pub: pub}, nil
}

// defaultAlgorithm is the algorithm assumed for a JWK without "alg": the
// first in Algorithms that fits its key.
func defaultAlgorithm(pub crypto.PublicKey) string {
	for _, alg := range Algorithms {
		if f := algorithms[alg].fits; f != nil && f(pub) {
			return alg
		}
	}
	return ""
}

// resolve builds the key of a validated config (Check and the entity
// checks passed): it reads the secret, whose length is known only now when
// it comes from a file or the environment.
func (k Key) resolve(field string) (key, error) {
	where := fmt.Sprintf("%s (kid %q)", field, k.Kid)
	a := algorithms[k.Algorithm]
	if a.minSecret == 0 {
		r, err := k.public()
		if err != nil {
			return key{}, fmt.Errorf("%s: %w", where, err)
		}
		return r, nil
	}
	s, err := k.secret(field + ".secret").Read()
	if err != nil {
		return key{}, fmt.Errorf("%s: %w", where, err)
	}
	if len(s) < a.minSecret {
		return key{}, fmt.Errorf("%s: the secret has %d bytes; %s needs at least %d", where, len(s), k.Algorithm, a.minSecret)
	}
	return key{alg: k.Algorithm, pub: []byte(s)}, nil
}

func parsePublicPEM(s string) (crypto.PublicKey, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("public_key is empty")
	}
	block, rest := pem.Decode([]byte(strings.TrimSpace(s)))
	if block == nil {
		return nil, errors.New("public_key is not PEM")
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, errors.New("public_key holds more than one PEM block")
	}
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return c.PublicKey, nil
	}
	return nil, fmt.Errorf("public_key is a PEM %q block; want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE (never a private key)", block.Type)
}

// jwk is one entry of a JWKS document.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
	D   string `json:"d"`
}

var curves = map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}

func (j jwk) key() (key, error) {
	if j.Use != "" && j.Use != "sig" {
		return key{}, fmt.Errorf("use %q is not sig", j.Use)
	}
	if j.D != "" {
		return key{}, errors.New("private key material in a public key set")
	}
	var pub crypto.PublicKey
	switch j.Kty {
	case "RSA":
		n, err1 := b64int(j.N)
		e, err2 := b64int(j.E)
		if err := errors.Join(err1, err2); err != nil {
			return key{}, err
		}
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
			return key{}, errors.New("bad RSA exponent")
		}
		pub = &rsa.PublicKey{N: n, E: int(e.Int64())}
	case "EC":
		curve, ok := curves[j.Crv]
		if !ok {
			return key{}, fmt.Errorf("unsupported curve %q", j.Crv)
		}
		size := (curve.Params().BitSize + 7) / 8
		x, err1 := b64fixed(j.X, size)
		y, err2 := b64fixed(j.Y, size)
		if err := errors.Join(err1, err2); err != nil {
			return key{}, err
		}
		// ParseUncompressedPublicKey checks that the point is on the curve.
		k, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
		if err != nil {
			return key{}, errors.New("EC point not on curve")
		}
		pub = k
	case "OKP":
		if j.Crv != "Ed25519" {
			return key{}, fmt.Errorf("unsupported OKP curve %q", j.Crv)
		}
		x, err := base64.RawURLEncoding.DecodeString(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return key{}, errors.New("bad Ed25519 public key")
		}
		pub = ed25519.PublicKey(x)
	default:
		return key{}, fmt.Errorf("unsupported key type %q", j.Kty)
	}
	alg := j.Alg
	if alg == "" {
		alg = defaultAlgorithm(pub)
	}
	return publicKey(alg, pub)
}

func b64int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, errors.New("bad base64url integer")
	}
	return new(big.Int).SetBytes(b), nil
}

// b64fixed decodes a coordinate, which MUST be the full size of a
// coordinate of the curve (RFC 7518 6.2.1.2, 6.2.1.3): a shorter one is
// not silently padded.
func b64fixed(s string, size int) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != size {
		return nil, errors.New("bad base64url coordinate")
	}
	return b, nil
}
