// Package paytoken is both sides of the payment-access-token (the seed
// freeletics-token-based-payment-authorization): the Issuer the payment
// service uses to sign short-lived tokens that carry a customer's
// entitlements, and the Checker the payment-token plugin uses to decide a
// request from such a token, the verified customer, the route's required
// entitlements and the revocations followed from the payment events.
package paytoken

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/jwtverify"

	"github.com/golang-jwt/jwt/v5"
)

// EntitlementsClaim is the claim listing what the token grants, e.g. ["coach"].
const EntitlementsClaim = "entitlements"

// DefaultTTLSeconds is a payment-access-token's lifetime unless
// configured: the issuer's default and the checker's replay window.
var DefaultTTLSeconds = config.Define("payment_token_ttl_seconds", "900")

// DefaultTTL is DefaultTTLSeconds as a duration.
var DefaultTTL = func() time.Duration { n, _ := strconv.Atoi(DefaultTTLSeconds); return time.Duration(n) * time.Second }()

// IssuerOptions configure an Issuer.
type IssuerOptions struct {
	// Key signs: an ECDSA P-256 key (ES256) or an Ed25519 key (EdDSA), so
	// verifiers hold only the public key.
	Key      crypto.Signer
	Kid      string
	Issuer   string
	Audience string
	// TTL is every token's lifetime, exp - iat, in whole seconds (default
	// DefaultTTL). It must not exceed any gateway's
	// max_token_lifetime_seconds (default the same 900 s): a gateway refuses
	// a longer-lived token, since it keeps revocations only that long.
	TTL time.Duration
	Now func() time.Time
}

// Issuer signs payment-access-tokens.
type Issuer struct {
	o      IssuerOptions
	method jwt.SigningMethod
}

// NewIssuer checks the key and options.
func NewIssuer(o IssuerOptions) (*Issuer, error) {
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.TTL < time.Second {
		return nil, errors.New("paytoken: TTL under a second")
	}
	o.TTL = o.TTL.Truncate(time.Second) // iat and exp have one-second resolution
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Kid == "" || o.Issuer == "" || o.Audience == "" {
		return nil, errors.New("paytoken: kid, issuer and audience are required")
	}
	i := &Issuer{o: o}
	switch k := o.Key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("paytoken: ECDSA keys must be P-256 (ES256)")
		}
		i.method = jwt.SigningMethodES256
	case ed25519.PrivateKey:
		i.method = jwt.SigningMethodEdDSA
	default:
		return nil, fmt.Errorf("paytoken: unsupported key %T (want ECDSA P-256 or Ed25519)", o.Key)
	}
	return i, nil
}

// Issued is a signed token and what it says.
type Issued struct {
	Token        string
	ID           string
	IssuedAt     time.Time
	ExpiresAt    time.Time
	Entitlements []string
}

// Issue signs a token for customer with entitlements.
func (i *Issuer) Issue(customer string, entitlements []string) (Issued, error) {
	if customer == "" {
		return Issued{}, errors.New("paytoken: empty customer id")
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return Issued{}, err
	}
	now := i.o.Now()
	iat := now.Truncate(time.Second)
	// exp from the truncated iat: exp - iat is exactly the TTL, never a
	// second more, so a gateway bounding lifetimes at the TTL accepts it.
	out := Issued{ID: hex.EncodeToString(jti[:]), IssuedAt: iat,
		ExpiresAt: iat.Add(i.o.TTL), Entitlements: append([]string{}, entitlements...)}
	t := jwt.NewWithClaims(i.method, jwt.MapClaims{
		"sub": customer, EntitlementsClaim: out.Entitlements, "iat": out.IssuedAt.Unix(), "exp": out.ExpiresAt.Unix(),
		"jti": out.ID, "iss": i.o.Issuer, "aud": i.o.Audience,
	})
	t.Header["kid"] = i.o.Kid
	t.Header["typ"] = jwtverify.PaymentType // explicit typing, RFC 8725 3.11
	var err error
	out.Token, err = t.SignedString(i.o.Key)
	return out, err
}

// JWKS is the public key as a JWK set, for verifiers' jwks_url.
func (i *Issuer) JWKS() []byte {
	b := func(x []byte) string { return base64.RawURLEncoding.EncodeToString(x) }
	var k map[string]any
	switch key := i.o.Key.(type) {
	case *ecdsa.PrivateKey:
		k = map[string]any{"kty": "EC", "crv": "P-256", "alg": "ES256",
			"x": b(key.X.FillBytes(make([]byte, 32))), "y": b(key.Y.FillBytes(make([]byte, 32)))}
	case ed25519.PrivateKey:
		k = map[string]any{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": b(key.Public().(ed25519.PublicKey))}
	}
	k["kid"], k["use"] = i.o.Kid, "sig"
	doc, _ := json.Marshal(map[string]any{"keys": []any{k}})
	return doc
}
