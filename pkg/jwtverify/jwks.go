package jwtverify

// The key set of a JWKS URL: fetched in the background, refetched on an
// unknown kid at most once per interval and once at a time (concurrent
// requests share one fetch), with the last good keys serving for a bounded
// stale age when the endpoint cannot be reached. The algorithm a key
// accepts comes from its JWK (or its key type): never from a token.

import (
	"context"
	"crypto"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/processwide"
)

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
	opts setOptions

	mu          sync.RWMutex
	keys        map[string]key
	lastSuccess time.Time // zero: never fetched
	lastAttempt time.Time
	inflight    bool   // a fetch is under way: joining it costs the endpoint nothing
	generation  uint64 // bumped when the fetched keys differ from the previous ones

	group singleflight.Group
	stop  chan struct{}
	once  sync.Once
}

// setOptions are the settings of a Set, taken from a Config.
type setOptions struct {
	Refresh, MinInterval, MaxStale, Timeout time.Duration
	Client                                  *http.Client // tests; nil: made from TLS
	// TLS is the endpoint's TLS client configuration (jwks_tls_* files; nil:
	// Go's defaults) and TLSDigest its files' digest: rotated files make a
	// new set.
	TLS       *tls.Config
	TLSDigest string
	Now       func() time.Time
}

var sets processwide.Map[string, *Set]

// sharedSet returns the process-wide Set for the URL and settings, started
// on first use.
func sharedSet(url string, o setOptions) *Set {
	key := fmt.Sprintf("%s|%v|%v|%v|%v|%s", url, o.Refresh, o.MinInterval, o.MaxStale, o.Timeout, o.TLSDigest)
	s, _ := sets.Get(key, func() (*Set, error) {
		s := newSet(url, o)
		s.Start()
		return s, nil
	})
	return s
}

// newSet makes a Set; call Start for background refreshes (tests may not).
func newSet(url string, o setOptions) *Set {
	var d Config
	config.FillZero(&d)
	for _, f := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&o.Refresh, seconds(d.JWKSRefreshSeconds)}, {&o.MinInterval, seconds(d.JWKSMinRefetchSeconds)},
		{&o.MaxStale, seconds(d.JWKSMaxStaleSeconds)}, {&o.Timeout, time.Duration(d.JWKSTimeoutMs) * time.Millisecond},
	} {
		if *f.v <= 0 {
			*f.v = f.def
		}
	}
	if o.Client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if o.TLS != nil {
			tr.TLSClientConfig = o.TLS
		}
		o.Client = &http.Client{Timeout: o.Timeout, Transport: tr}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Set{url: url, opts: o, keys: map[string]key{}, stop: make(chan struct{})}
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

// URL is the JWKS URL the set fetches.
func (s *Set) URL() string { return s.url }

// LastSuccess is when the keys were last fetched (zero: never).
func (s *Set) LastSuccess() time.Time {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.lastSuccess
}

// RefreshAge is how long ago the keys were last fetched, by the set's
// clock; ok is false when they never were.
func (s *Set) RefreshAge() (age time.Duration, ok bool) {
	last := s.LastSuccess()
	if last.IsZero() {
		return 0, false
	}
	return s.opts.Now().Sub(last), true
}

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
func (s *Set) Lookup(kid string) (key, uint64, error) {
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
		return key{}, gen, ErrUnavailable
	}
	return key{}, gen, ErrUnknownKid
}

func (s *Set) peek(kid string) (k key, gen uint64, ok, usable, mayFetch bool) {
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
			slog.Warn("jwks fetch failed; keeping the last good keys", slog.String("url", s.url), slog.String("error", err.Error()))
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

func (s *Set) fetch() (map[string]key, error) {
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
	return parseJWKS(body)
}

func sameKeys(a, b map[string]key) bool {
	if len(a) != len(b) {
		return false
	}
	for kid, ka := range a {
		kb, ok := b[kid]
		if !ok || ka.alg != kb.alg {
			return false
		}
		if eq, ok := ka.pub.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(kb.pub) {
			return false
		}
	}
	return true
}

// parseJWKS reads a JWKS document. Keys that cannot be used for signature
// verification (encryption keys, symmetric keys, private keys, unknown
// types, an alg that does not fit the key) are skipped with a log line, so
// one odd key does not take the others down; a document with no usable key
// is an error.
func parseJWKS(doc []byte) (map[string]key, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		return nil, fmt.Errorf("jwks: not a JWK set: %w", err)
	}
	keys := make(map[string]key, len(set.Keys))
	for i, j := range set.Keys {
		k, err := j.key()
		if err == nil {
			if _, dup := keys[j.Kid]; dup {
				err = fmt.Errorf("duplicate kid %q", j.Kid)
			}
		}
		if err != nil {
			slog.Warn("jwks: key skipped", slog.Int("index", i), slog.String("kid", j.Kid), slog.String("error", err.Error()))
			continue
		}
		keys[j.Kid] = k
	}
	if len(keys) == 0 {
		return nil, errors.New("jwks: no usable signature key in the set")
	}
	return keys, nil
}
