// Package jwtverify verifies JWTs against keys whose algorithm is fixed by
// configuration (static keys) or by their JWK (a JWKS URL), never by the
// token, and checks the registered claims. Verified tokens are cached by the
// hash of the token, so a repeated token does not pay the signature again;
// an entry never outlives the token's exp. jwt-claims and payment-token both
// verify through this package.
package jwtverify

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/tlsconf"
)

// Config is the verification part of a plugin's config: where the keys
// come from and which claims a token must carry. Its tags are the one
// declaration of each field (see pkg/config).
type Config struct {
	Keys                  []Key    `json:"keys" doc:"Static verification keys, each with its one algorithm."`
	JWKSURL               string   `json:"jwks_url" kong:"match=$http_url" doc:"JWKS endpoint to take asymmetric keys from (alg per JWK)."`
	JWKSRefreshSeconds    int      `json:"jwks_refresh_seconds" default:"300" kong:"between=1|86400" doc:"Background refresh interval of the JWKS."`
	JWKSMinRefetchSeconds int      `json:"jwks_min_refetch_seconds" default:"30" kong:"between=1|3600" doc:"At most one refetch on an unknown kid per this interval."`
	JWKSMaxStaleSeconds   int      `json:"jwks_max_stale_seconds" default:"3600" kong:"between=1|604800" doc:"How long the last good keys serve while the endpoint fails; then 503 keys_unavailable."`
	JWKSTimeoutMs         int      `json:"jwks_timeout_ms" default:"5000" kong:"between=1|60000" doc:"Timeout of one JWKS fetch."`
	JWKSTLSCAFile         string   `json:"jwks_tls_ca_file" doc:"PEM file of the CA certificates that verify an https jwks_url, instead of the system's roots; read at instance start."`
	JWKSTLSCertFile       string   `json:"jwks_tls_cert_file" doc:"PEM file of the client certificate presented to the JWKS endpoint when it asks for one; with jwks_tls_key_file."`
	JWKSTLSKeyFile        string   `json:"jwks_tls_key_file" doc:"PEM file of that client certificate's private key (unencrypted); with jwks_tls_cert_file."`
	Issuers               []string `json:"issuers" doc:"Accepted iss values; empty accepts any."`
	Audiences             []string `json:"audiences" doc:"Accepted aud values (any one suffices); empty accepts any."`
	LeewaySeconds         int      `json:"leeway_seconds" default:"30" kong:"between=0|600" doc:"Clock skew allowed for exp, nbf and iat."`
	RequiredClaims        []string `json:"required_claims" doc:"Claims that must be present (exp always is)."`
	MaxTokenBytes         int      `json:"max_token_bytes" default:"8192" kong:"between=64|65536" doc:"Longest token accepted, checked before any parsing."`
	CacheSize             int      `json:"cache_size" default:"10000" kong:"between=0|10000000" doc:"Verified-token cache entries (0 turns the cache off)."`
	RetryAfterSeconds     int      `json:"retry_after_seconds" default:"30" kong:"between=0|3600" doc:"Retry-After sent with 503 keys_unavailable."`

	// Type is the typ a token must have (RFC 8725 3.11); empty accepts any
	// but subgate's own kinds (PaymentType). Set by the plugin, not Kong.
	Type string `json:"-"`
	// MaxLifetime, when positive, is the longest exp - iat accepted; a
	// token without iat is then refused (ClaimMissing), since its lifetime
	// is unknown. Set by the plugin from its own setting.
	MaxLifetime time.Duration `json:"-"`

	JWKSClient *http.Client     `json:"-"` // tests
	Now        func() time.Time `json:"-"` // tests
}

// EntityChecks: a verifier needs keys from somewhere (keys: [] is none); a
// client certificate comes with its key.
func (Config) EntityChecks() []config.Check {
	return []config.Check{config.AtLeastOneOf("keys", "jwks_url"), config.MutuallyRequired("jwks_tls_cert_file", "jwks_tls_key_file")}
}

// jwksTLS is the JWKS endpoint's TLS files.
func (c *Config) jwksTLS() tlsconf.Files {
	return tlsconf.Files{CAFile: c.JWKSTLSCAFile, CertFile: c.JWKSTLSCertFile, KeyFile: c.JWKSTLSKeyFile}
}

// Check: no kid twice (the token's kid would pick one of them), and a
// JWKS URL that parses (Kong's pattern sees only its scheme and host).
func (c Config) Check() error {
	var errs []error
	seen := map[string]bool{}
	for i, k := range c.Keys {
		if seen[k.Kid] {
			errs = append(errs, fmt.Errorf("keys[%d]: kid %q is configured twice", i+1, k.Kid))
		}
		seen[k.Kid] = true
	}
	if c.JWKSURL != "" {
		if u, err := url.Parse(c.JWKSURL); err != nil || u.Host == "" {
			errs = append(errs, fmt.Errorf("jwks_url %q is not a URL with a host", c.JWKSURL))
		}
	}
	return errors.Join(errs...)
}

func seconds(n int) time.Duration { return time.Duration(n) * time.Second }

// Leeway is the allowed clock skew.
func (c *Config) Leeway() time.Duration { return seconds(c.LeewaySeconds) }

// Verified is a token that passed every check. Claims is shared with the
// cache: treat it as read-only.
type Verified struct {
	Claims                         map[string]any
	Kid, Algorithm                 string
	IssuedAt, ExpiresAt, NotBefore time.Time // zero when absent
	Cached                         bool
}

// Kind classifies why a token was refused.
type Kind int

// The kinds, each mapped to one client-facing code by the plugins.
const (
	Malformed Kind = iota + 1
	TooLarge
	InvalidSignature
	UnknownKey
	Expired
	NotYetValid
	IssuerInvalid
	AudienceInvalid
	ClaimMissing
	KeysUnavailable
	LifetimeTooLong // exp - iat over Config.MaxLifetime
)

// Error is a refusal. Detail is safe to show a client: it never contains
// the token or anything copied from it.
type Error struct {
	Kind   Kind
	Detail string
}

func (e *Error) Error() string { return e.Detail }

// KindOf returns the Kind of an error from Verify, Malformed for others.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Malformed
}

func refuse(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Detail: fmt.Sprintf(format, args...)}
}

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	opts   Config
	static map[string]key
	set    *Set // nil without a JWKS URL
	parser *jwt.Parser
	cache  *lru.Cache[[32]byte, cached]
}

type cached struct {
	v   *Verified
	gen uint64 // JWKS generation the signature was checked under
}

// New builds a Verifier from a validated Config (zero values the
// declaration forbids take its defaults). Its error says what is wrong in
// terms of the configuration.
func New(o Config) (*Verifier, error) {
	config.FillZero(&o)
	// A clock or client a test injects is not a setting the process-wide
	// key names, so such a Verifier gets a key set of its own: shared, it
	// could get another test's set whose closed server had the same port.
	hooked := o.Now != nil || o.JWKSClient != nil
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := config.Validate(&o); err != nil {
		return nil, err
	}
	v := &Verifier{opts: o, static: map[string]key{}}
	methods := map[string]bool{}
	var errs []error
	for i, k := range o.Keys {
		r, err := k.resolve(fmt.Sprintf("keys[%d]", i+1))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		v.static[k.Kid] = r
		methods[r.alg] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.JWKSURL == "" && o.jwksTLS().Set() {
		return nil, errors.New("jwks_tls_ca_file, jwks_tls_cert_file and jwks_tls_key_file need a jwks_url")
	}
	if o.JWKSURL != "" {
		so := setOptions{
			Refresh: seconds(o.JWKSRefreshSeconds), MinInterval: seconds(o.JWKSMinRefetchSeconds),
			MaxStale: seconds(o.JWKSMaxStaleSeconds), Timeout: time.Duration(o.JWKSTimeoutMs) * time.Millisecond,
			Client: o.JWKSClient, Now: o.Now,
		}
		if f := o.jwksTLS(); f.Set() {
			if !strings.HasPrefix(o.JWKSURL, "https://") {
				return nil, fmt.Errorf("jwks_tls_* files need an https jwks_url, not %q", o.JWKSURL)
			}
			l, err := f.Load("jwks_", "")
			if err != nil {
				return nil, err
			}
			so.TLS, so.TLSDigest = l.Config, l.Digest
		}
		if hooked {
			v.set = newSet(o.JWKSURL, so)
			v.set.Start()
		} else {
			v.set = sharedSet(o.JWKSURL, so)
		}
		for alg, a := range algorithms {
			if a.minSecret == 0 { // a JWKS never supplies HMAC keys
				methods[alg] = true
			}
		}
	}
	valid := make([]string, 0, len(methods))
	for m := range methods {
		valid = append(valid, m)
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(valid), // belt and braces: the keyfunc pins the exact alg per key
		jwt.WithLeeway(o.Leeway()),
		jwt.WithTimeFunc(o.Now),
		jwt.WithIssuedAt(),
		jwt.WithExpirationRequired(), // a token that never expires is refused
		jwt.WithStrictDecoding(),
	)
	if o.CacheSize > 0 {
		c, err := lru.New[[32]byte, cached](o.CacheSize)
		if err != nil {
			return nil, err
		}
		v.cache = c
	}
	return v, nil
}

// RetryAfter is the Retry-After (seconds) for keys_unavailable.
func (v *Verifier) RetryAfter() int { return v.opts.RetryAfterSeconds }

// Close drops the cache. The JWKS key set is shared per URL and lives on.
func (v *Verifier) Close() {
	if v.cache != nil {
		v.cache.Purge()
	}
}

// Verify checks token and returns its claims, or an *Error.
func (v *Verifier) Verify(token string) (*Verified, error) {
	if len(token) > v.opts.MaxTokenBytes {
		return nil, refuse(TooLarge, "token has %d bytes; the limit is %d", len(token), v.opts.MaxTokenBytes)
	}
	if token == "" {
		return nil, refuse(Malformed, "empty token")
	}
	var sum [32]byte
	if v.cache != nil {
		sum = sha256.Sum256([]byte(token))
		if hit, ok := v.fromCache(sum); ok {
			return hit, nil // only tokens that passed every check are cached
		}
	}
	if !compact(token) {
		return nil, refuse(Malformed, "token is not a well-formed JWT")
	}
	var gen uint64 // the JWKS generation the key came from, for the cache entry
	mc := jwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(token, mc, func(t *jwt.Token) (any, error) { return v.keyFor(t, &gen) })
	if err == nil || errors.Is(err, jwt.ErrTokenInvalidClaims) { // the signature verified
		if rerr := datesInRange(mc); rerr != nil {
			return nil, rerr
		}
	}
	if err != nil {
		return nil, classify(err)
	}
	out := &Verified{Claims: mc, Algorithm: tok.Method.Alg()}
	out.Kid, _ = tok.Header["kid"].(string)
	if err := v.checkClaims(mc, out); err != nil {
		return nil, err
	}
	if v.cache != nil {
		v.cache.Add(sum, cached{v: out, gen: gen})
	}
	return out, nil
}

func (v *Verifier) fromCache(sum [32]byte) (*Verified, bool) {
	c, ok := v.cache.Get(sum)
	if !ok {
		return nil, false
	}
	if v.set != nil && v.set.Generation() != c.gen {
		v.cache.Remove(sum) // the key set changed: verify against the current keys
		return nil, false
	}
	if !v.opts.Now().Before(c.v.ExpiresAt.Add(v.opts.Leeway())) {
		v.cache.Remove(sum) // never serve an entry past the token's exp
		return nil, false
	}
	hit := *c.v
	hit.Cached = true
	return &hit, true
}

// keyFor is golang-jwt's keyfunc: it picks the key by kid and refuses the
// token unless its alg header is exactly the algorithm fixed for that key.
// This is what defeats algorithm confusion (an HS256 token "signed" with an
// RSA public key's bytes) and alg "none".
func (v *Verifier) keyFor(t *jwt.Token, gen *uint64) (any, error) {
	if err := checkJWS(t.Raw, t.Header, v.opts.Type); err != nil {
		return nil, err
	}
	kid := ""
	if raw, present := t.Header["kid"]; present {
		s, ok := raw.(string)
		if !ok {
			return nil, refuse(Malformed, "kid header is not a string")
		}
		kid = s
	}
	alg := t.Method.Alg()
	if r, ok := v.static[kid]; ok {
		if alg != r.alg {
			return nil, refuse(InvalidSignature, "algorithm %s is not the one configured for this key", safeAlg(alg))
		}
		strict(t)
		return r.pub, nil
	}
	if v.set == nil {
		return nil, refuse(UnknownKey, "unknown key id")
	}
	k, g, err := v.set.Lookup(kid)
	*gen = g
	switch {
	case errors.Is(err, ErrUnavailable):
		return nil, refuse(KeysUnavailable, "verification keys are unavailable; retry later")
	case err != nil:
		return nil, refuse(UnknownKey, "unknown key id")
	case alg != k.alg:
		return nil, refuse(InvalidSignature, "algorithm %s is not the one published for this key", safeAlg(alg))
	}
	strict(t)
	return k.pub, nil
}

// strictPSS are the PS* methods as RFC 7518 3.5 defines them: a salt as
// long as the hash. golang-jwt's own accept any salt length, for tokens of
// an old library, which is another algorithm than the one named.
var strictPSS = func() map[string]jwt.SigningMethod {
	m := map[string]jwt.SigningMethod{}
	for _, ps := range []*jwt.SigningMethodRSAPSS{jwt.SigningMethodPS256, jwt.SigningMethodPS384, jwt.SigningMethodPS512} {
		m[ps.Alg()] = &jwt.SigningMethodRSAPSS{SigningMethodRSA: ps.SigningMethodRSA, Options: ps.Options}
	}
	return m
}()

// strict swaps in the strict method before golang-jwt checks the signature.
func strict(t *jwt.Token) {
	if m, ok := strictPSS[t.Method.Alg()]; ok {
		t.Method = m
	}
}

// safeAlg echoes an alg only when it is one we know, so that nothing a
// client wrote is reflected back verbatim.
func safeAlg(a string) string {
	if _, ok := algorithms[a]; ok {
		return a
	}
	return "(unsupported)"
}

func classify(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return refuse(Malformed, "token is not a well-formed JWT")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return refuse(InvalidSignature, "signature is invalid")
	case errors.Is(err, jwt.ErrTokenUnverifiable): // no alg, or one golang-jwt does not know
		return refuse(Malformed, "token names no usable algorithm")
	case errors.Is(err, jwt.ErrTokenExpired):
		return refuse(Expired, "token has expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return refuse(NotYetValid, "token is not valid yet")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return refuse(ClaimMissing, "token has no exp claim")
	}
	return refuse(Malformed, "token claims are invalid")
}

func (v *Verifier) checkClaims(mc jwt.MapClaims, out *Verified) error {
	// golang-jwt has validated the types and times of exp, nbf and iat.
	if err := registeredTypes(mc); err != nil {
		return err
	}
	if t, _ := mc.GetExpirationTime(); t != nil {
		out.ExpiresAt = t.Time
	}
	if t, _ := mc.GetNotBefore(); t != nil {
		out.NotBefore = t.Time
	}
	if t, _ := mc.GetIssuedAt(); t != nil {
		out.IssuedAt = t.Time
	}
	if err := v.lifetime(out); err != nil {
		return err
	}
	if len(v.opts.Issuers) > 0 {
		iss, err := mc.GetIssuer()
		if err != nil || !slices.Contains(v.opts.Issuers, iss) {
			return refuse(IssuerInvalid, "issuer is not accepted")
		}
	}
	if len(v.opts.Audiences) > 0 {
		aud, err := mc.GetAudience()
		if err != nil || !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(v.opts.Audiences, a) }) {
			return refuse(AudienceInvalid, "audience is not accepted")
		}
	}
	for _, name := range v.opts.RequiredClaims {
		if val, ok := mc[name]; !ok || val == nil {
			return refuse(ClaimMissing, "required claim %q is missing", name)
		}
	}
	return nil
}

// lifetime enforces MaxLifetime on the token's own claims (exp - iat, both
// on the issuer's clock: no leeway, no skew involved).
func (v *Verifier) lifetime(out *Verified) error {
	bound := v.opts.MaxLifetime
	switch {
	case bound <= 0:
		return nil
	case out.IssuedAt.IsZero():
		return refuse(ClaimMissing, "token has no iat claim: its lifetime cannot be bounded")
	case out.ExpiresAt.Sub(out.IssuedAt) > bound:
		return refuse(LifetimeTooLong, "token lifetime (exp - iat) exceeds %s", bound)
	}
	return nil
}

// registeredTypes refuses registered claims of the wrong JSON type (RFC
// 7519 4.1.1-4.1.3, 4.1.7: iss, sub and jti are strings, aud a string or an
// array of strings), whether or not the route checks their values: golang-jwt
// looks at them only when asked to, and a reader after the gateway could take
// a number where it expects a name.
func registeredTypes(mc jwt.MapClaims) error {
	for _, name := range []string{"iss", "sub", "jti"} {
		if val, ok := mc[name]; ok {
			if _, isString := val.(string); !isString {
				return refuse(Malformed, "the %s claim is not a string", name)
			}
		}
	}
	aud, present := mc["aud"]
	switch aud := aud.(type) {
	case string: // one audience
	case nil: // absent is fine; null is not a string
		if present {
			return refuse(Malformed, "the aud claim is null")
		}
	case []any:
		for _, a := range aud {
			if _, isString := a.(string); !isString {
				return refuse(Malformed, "the aud claim holds a value that is not a string")
			}
		}
	default: // golang-jwt v5.3.1 takes an object or a number for no audience
		return refuse(Malformed, "the aud claim is neither a string nor an array of strings")
	}
	return nil
}

// maxNumericDate is 9999-12-31T23:59:59Z. golang-jwt turns a NumericDate
// into a time through int64 seconds, and a larger value wraps around to a
// time long past: an nbf or iat of 2^63 would read as satisfied and a far
// exp as expired. Such a date is refused as malformed instead.
const maxNumericDate = 253402300799

func datesInRange(mc jwt.MapClaims) error {
	for _, name := range []string{"exp", "nbf", "iat"} {
		if f, ok := mc[name].(float64); ok && (f > maxNumericDate || f < -maxNumericDate) {
			return refuse(Malformed, "the %s claim is not a date this gateway can represent", name)
		}
	}
	return nil
}
