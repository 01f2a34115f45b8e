// Package jwks keeps the verification keys published at a JWKS URL: fetched
// in the background, refetched on an unknown kid at most once per interval
// and once at a time (concurrent requests share one fetch), with the last
// good keys serving for a bounded stale age when the endpoint cannot be
// reached. The algorithm a key accepts comes from its JWK (or, for keys
// whose type admits only one, from the key type): never from a token.
package jwks

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/subgate/subgate/pkg/audit"
)

// Key is one usable verification key.
type Key struct {
	Kid       string
	Algorithm string // JWS alg, e.g. RS256, ES256, EdDSA
	Public    crypto.PublicKey
}

// Options tune a Set. Zero values take the documented defaults.
type Options struct {
	Refresh     time.Duration // background refresh interval (default 5m)
	MinInterval time.Duration // at most one unknown-kid refetch per interval (default 30s)
	MaxStale    time.Duration // last good keys serve this long after the last success (default 1h)
	Timeout     time.Duration // per fetch (default 5s)
	Client      *http.Client  // default: a client with Timeout
	Now         func() time.Time
}

func (o *Options) defaults() {
	if o.Refresh <= 0 {
		o.Refresh = 5 * time.Minute
	}
	if o.MinInterval <= 0 {
		o.MinInterval = 30 * time.Second
	}
	if o.MaxStale <= 0 {
		o.MaxStale = time.Hour
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Timeout}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// ErrUnavailable means no key can be trusted right now: the endpoint was
// never reached, or the last good keys are older than MaxStale.
var ErrUnavailable = errors.New("jwks: no usable keys (endpoint unreachable and no fresh copy)")

// ErrUnknownKid means the keys are current but none has the token's kid.
var ErrUnknownKid = errors.New("jwks: unknown kid")

// maxBody bounds a JWKS document; real ones are a few KiB.
const maxBody = 1 << 20

// Set is the key set of one JWKS URL.
type Set struct {
	url  string
	opts Options

	mu          sync.RWMutex
	keys        map[string]Key
	lastSuccess time.Time // zero: never fetched
	lastAttempt time.Time
	inflight    bool   // a fetch is under way: joining it costs the endpoint nothing
	generation  uint64 // bumped when the fetched keys differ from the previous ones

	group singleflight.Group
	stop  chan struct{}
	once  sync.Once
}

var (
	sharedMu sync.Mutex
	shared   = map[string]*Set{}
)

// Shared returns the process-wide Set for url and these options, starting
// it on first use. go-pdk makes a new plugin instance on every config change
// and never tells the old one to stop, so sharing by URL keeps one fetcher
// and one refresh loop per endpoint instead of one per instance ever made.
func Shared(url string, o Options) *Set {
	o.defaults()
	key := fmt.Sprintf("%s|%v|%v|%v|%v", url, o.Refresh, o.MinInterval, o.MaxStale, o.Timeout)
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if s, ok := shared[key]; ok {
		return s
	}
	s := New(url, o)
	s.Start()
	shared[key] = s
	return s
}

// New makes a Set; call Start for background refreshes (tests may not).
func New(url string, o Options) *Set {
	o.defaults()
	return &Set{url: url, opts: o, keys: map[string]Key{}, stop: make(chan struct{})}
}

// Start fetches once in the background and then every Refresh.
func (s *Set) Start() {
	go func() {
		t := time.NewTicker(s.opts.Refresh)
		defer t.Stop()
		for {
			_ = s.refresh()
			select {
			case <-t.C:
			case <-s.stop:
				return
			}
		}
	}()
}

// Close stops the refresh loop.
func (s *Set) Close() { s.once.Do(func() { close(s.stop) }) }

// Generation changes whenever a fetch brings a different key set, so that
// caches of verified tokens can be dropped when a key is withdrawn.
func (s *Set) Generation() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.generation
}

// Lookup returns the key for kid and the generation of the key set it was
// found in. An unknown kid triggers one shared refetch
// if none happened within MinInterval. It returns ErrUnavailable when no key
// can be trusted (the caller answers 503, not 401) and ErrUnknownKid when the
// keys are current but do not include kid.
func (s *Set) Lookup(kid string) (Key, uint64, error) {
	k, gen, ok, usable, mayFetch := s.peek(kid)
	if ok && usable {
		return k, gen, nil
	}
	if mayFetch {
		_ = s.refresh() // shared with concurrent callers; errors are logged inside
		k, gen, ok, usable, _ = s.peek(kid)
		if ok && usable {
			return k, gen, nil
		}
	}
	if !usable {
		return Key{}, gen, ErrUnavailable
	}
	return Key{}, gen, ErrUnknownKid
}

func (s *Set) peek(kid string) (k Key, gen uint64, ok, usable, mayFetch bool) {
	now := s.opts.Now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, ok = s.keys[kid]
	gen = s.generation
	usable = !s.lastSuccess.IsZero() && now.Sub(s.lastSuccess) <= s.opts.MaxStale
	mayFetch = s.inflight || s.lastAttempt.IsZero() || now.Sub(s.lastAttempt) >= s.opts.MinInterval
	return
}

// refresh fetches the document once for all concurrent callers.
func (s *Set) refresh() error {
	_, err, _ := s.group.Do("fetch", func() (any, error) {
		s.mu.Lock()
		s.lastAttempt, s.inflight = s.opts.Now(), true
		s.mu.Unlock()
		keys, err := s.fetch()
		s.mu.Lock()
		s.inflight = false
		s.mu.Unlock()
		if err != nil {
			audit.Logger().Warn("jwks fetch failed; keeping the last good keys", slog.String("url", s.url), slog.String("error", err.Error()))
			return nil, err
		}
		s.mu.Lock()
		if !sameKeys(s.keys, keys) {
			s.generation++
		}
		s.keys, s.lastSuccess = keys, s.opts.Now()
		s.mu.Unlock()
		return nil, nil
	})
	return err
}

func (s *Set) fetch() (map[string]Key, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks: %s answered %d", s.url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("jwks: document larger than %d bytes", maxBody)
	}
	return Parse(body)
}

func sameKeys(a, b map[string]Key) bool {
	if len(a) != len(b) {
		return false
	}
	for kid, ka := range a {
		kb, ok := b[kid]
		if !ok || ka.Algorithm != kb.Algorithm {
			return false
		}
		if eq, ok := ka.Public.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(kb.Public) {
			return false
		}
	}
	return true
}

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

// Parse reads a JWKS document. Keys that cannot be used for signature
// verification (encryption keys, symmetric keys, private keys, unknown
// types, an alg that does not fit the key) are skipped with a log line, so
// one odd key does not take the others down; a document with no usable key
// is an error.
func Parse(doc []byte) (map[string]Key, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		return nil, fmt.Errorf("jwks: not a JWK set: %w", err)
	}
	keys := make(map[string]Key, len(set.Keys))
	for i, j := range set.Keys {
		k, err := j.key()
		if err == nil {
			if _, dup := keys[k.Kid]; dup {
				err = fmt.Errorf("duplicate kid %q", k.Kid)
			}
		}
		if err != nil {
			audit.Logger().Warn("jwks: key skipped", slog.Int("index", i), slog.String("kid", j.Kid), slog.String("error", err.Error()))
			continue
		}
		keys[k.Kid] = k
	}
	if len(keys) == 0 {
		return nil, errors.New("jwks: no usable signature key in the set")
	}
	return keys, nil
}

func (j jwk) key() (Key, error) {
	if j.Use != "" && j.Use != "sig" {
		return Key{}, fmt.Errorf("use %q is not sig", j.Use)
	}
	if j.D != "" {
		return Key{}, errors.New("private key material in a public key set")
	}
	k := Key{Kid: j.Kid, Algorithm: j.Alg}
	switch j.Kty {
	case "RSA":
		n, err1 := b64int(j.N)
		e, err2 := b64int(j.E)
		if err := errors.Join(err1, err2); err != nil {
			return Key{}, err
		}
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
			return Key{}, errors.New("bad RSA exponent")
		}
		pub := &rsa.PublicKey{N: n, E: int(e.Int64())}
		if pub.Size() < 256 {
			return Key{}, fmt.Errorf("RSA key of %d bits is too short (2048 minimum)", pub.N.BitLen())
		}
		k.Public = pub
		if k.Algorithm == "" {
			k.Algorithm = "RS256" // documented default for RSA JWKs without alg
		}
	case "EC":
		var curve elliptic.Curve
		var alg string
		switch j.Crv {
		case "P-256":
			curve, alg = elliptic.P256(), "ES256"
		case "P-384":
			curve, alg = elliptic.P384(), "ES384"
		default:
			return Key{}, fmt.Errorf("unsupported curve %q", j.Crv)
		}
		x, err1 := b64int(j.X)
		y, err2 := b64int(j.Y)
		if err := errors.Join(err1, err2); err != nil {
			return Key{}, err
		}
		pub := &ecdsa.PublicKey{Curve: curve, X: x, Y: y}
		if !curve.IsOnCurve(x, y) { //nolint:staticcheck // the point check is what we want here
			return Key{}, errors.New("EC point not on curve")
		}
		k.Public = pub
		if k.Algorithm == "" {
			k.Algorithm = alg
		}
	case "OKP":
		if j.Crv != "Ed25519" {
			return Key{}, fmt.Errorf("unsupported OKP curve %q", j.Crv)
		}
		x, err := base64.RawURLEncoding.DecodeString(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return Key{}, errors.New("bad Ed25519 public key")
		}
		k.Public = ed25519.PublicKey(x)
		if k.Algorithm == "" {
			k.Algorithm = "EdDSA"
		}
	default:
		return Key{}, fmt.Errorf("unsupported key type %q", j.Kty)
	}
	if err := Fits(k.Algorithm, k.Public); err != nil {
		return Key{}, err
	}
	return k, nil
}

// Fits reports whether alg can be used with pub: the pairing that makes the
// accepted algorithm a property of the key.
func Fits(alg string, pub crypto.PublicKey) error {
	ok := false
	switch p := pub.(type) {
	case *rsa.PublicKey:
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			ok = true
		}
	case *ecdsa.PublicKey:
		ok = (alg == "ES256" && p.Curve == elliptic.P256()) || (alg == "ES384" && p.Curve == elliptic.P384())
	case ed25519.PublicKey:
		ok = alg == "EdDSA"
	}
	if !ok {
		return fmt.Errorf("algorithm %q does not fit a %T key", alg, pub)
	}
	return nil
}

func b64int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, errors.New("bad base64url integer")
	}
	return new(big.Int).SetBytes(b), nil
}
