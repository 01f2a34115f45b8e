package jwtverify

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// ecKeyJWK is the JWK of a P-256 public key (no alg: the curve implies ES256).
func ecKeyJWK(kid string, k *ecdsa.PublicKey) map[string]any {
	b, err := k.Bytes() // 0x04 || X || Y
	if err != nil {
		panic(err)
	}
	return map[string]any{"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(b[1:33]), "y": b64(b[33:])}
}

// endpoint serves a mutable JWKS document and counts fetches.
type endpoint struct {
	mu     sync.Mutex
	doc    []byte
	status int
	delay  time.Duration
	hits   atomic.Int64
	srv    *httptest.Server
}

func newEndpoint(t *testing.T, keys ...map[string]any) *endpoint {
	e := &endpoint{status: 200}
	e.set(keys...)
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.hits.Add(1)
		e.mu.Lock()
		doc, status, delay := e.doc, e.status, e.delay
		e.mu.Unlock()
		time.Sleep(delay)
		w.WriteHeader(status)
		_, _ = w.Write(doc)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *endpoint) set(keys ...map[string]any) {
	doc, _ := json.Marshal(map[string]any{"keys": keys})
	e.mu.Lock()
	e.doc = doc
	e.mu.Unlock()
}

func (e *endpoint) fail(status int) {
	e.mu.Lock()
	e.status = status
	e.mu.Unlock()
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func genEC(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRotationAndUnknownKidRateLimit(t *testing.T) {
	k1, k2 := genEC(t), genEC(t)
	e := newEndpoint(t, ecKeyJWK("k1", &k1.PublicKey))
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	s := newSet(e.srv.URL, setOptions{MinInterval: 30 * time.Second, Now: c.Now})

	k, _, err := s.Lookup("k1")
	if err != nil || k.alg != "ES256" || !k1.PublicKey.Equal(k.pub) {
		t.Fatalf("first lookup: %v %+v", err, k)
	}
	gen := s.Generation()

	// Rotation: k2 is published; a token with k2 arrives within the interval
	// of the last fetch: no refetch yet, the kid is unknown.
	e.set(ecKeyJWK("k2", &k2.PublicKey))
	c.add(5 * time.Second)
	if _, _, err := s.Lookup("k2"); !errors.Is(err, ErrUnknownKid) {
		t.Fatalf("within MinInterval: err = %v, want ErrUnknownKid", err)
	}
	if e.hits.Load() != 1 {
		t.Fatalf("refetched within MinInterval: %d fetches", e.hits.Load())
	}
	// After the interval, the unknown kid triggers one refetch and is found.
	c.add(30 * time.Second)
	if _, _, err := s.Lookup("k2"); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if s.Generation() == gen {
		t.Fatal("generation did not change with the key set")
	}
	// k1 was withdrawn.
	c.add(time.Minute)
	if _, _, err := s.Lookup("k1"); !errors.Is(err, ErrUnknownKid) {
		t.Fatalf("withdrawn key: err = %v", err)
	}

	// A flood of random kids costs at most one fetch per interval.
	before := e.hits.Load()
	for i := range 1000 {
		_, _, _ = s.Lookup(fmt.Sprintf("random-%d", i))
	}
	if got := e.hits.Load() - before; got > 1 {
		t.Fatalf("1000 unknown kids caused %d fetches, want at most 1", got)
	}
}

func TestConcurrentLookupsShareOneFetch(t *testing.T) {
	k1 := genEC(t)
	e := newEndpoint(t, ecKeyJWK("k1", &k1.PublicKey))
	e.delay = 100 * time.Millisecond
	s := newSet(e.srv.URL, setOptions{})
	var wg sync.WaitGroup
	var failures atomic.Int64
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := s.Lookup("k1"); err != nil {
				failures.Add(1)
			}
		}()
	}
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d lookups failed", failures.Load())
	}
	if e.hits.Load() != 1 {
		t.Fatalf("%d fetches for 50 concurrent lookups, want 1", e.hits.Load())
	}
}

func TestUnreachableServesLastGoodKeysForMaxStale(t *testing.T) {
	k1 := genEC(t)
	e := newEndpoint(t, ecKeyJWK("k1", &k1.PublicKey))
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	s := newSet(e.srv.URL, setOptions{MinInterval: time.Second, MaxStale: time.Hour, Now: c.Now})
	if _, _, err := s.Lookup("k1"); err != nil {
		t.Fatal(err)
	}
	e.fail(500)
	c.add(30 * time.Minute)
	_ = s.refresh() // a background refresh that fails
	if _, _, err := s.Lookup("k1"); err != nil {
		t.Fatalf("within MaxStale the last good keys must serve: %v", err)
	}
	c.add(31 * time.Minute)
	if _, _, err := s.Lookup("k1"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("beyond MaxStale: err = %v, want ErrUnavailable", err)
	}
	// The endpoint comes back: the next lookup past MinInterval recovers.
	e.fail(200)
	c.add(2 * time.Second)
	if _, _, err := s.Lookup("k1"); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestNeverReachedIsUnavailable(t *testing.T) {
	s := newSet("http://127.0.0.1:1/jwks", setOptions{Timeout: 200 * time.Millisecond})
	if _, _, err := s.Lookup("k1"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func TestStartFetchesInBackground(t *testing.T) {
	k1 := genEC(t)
	e := newEndpoint(t, ecKeyJWK("k1", &k1.PublicKey))
	s := newSet(e.srv.URL, setOptions{Refresh: 20 * time.Millisecond})
	s.Start()
	defer s.Close()
	deadline := time.Now().Add(5 * time.Second)
	for e.hits.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("background refresh made %d fetches", e.hits.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestParse(t *testing.T) {
	ec := genEC(t)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	rsaK, _ := rsa.GenerateKey(rand.Reader, 2048)
	smallRSA, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsaJWK := func(kid, alg string, k *rsa.PublicKey) map[string]any {
		return map[string]any{"kty": "RSA", "kid": kid, "alg": alg, "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	}
	ec521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	p521, _ := ec521.PublicKey.Bytes() // 0x04 || x || y, 66 bytes each (RFC 7520 4.3's curve)
	offCurve := ecKeyJWK("off", &ec.PublicKey)
	offCurve["y"] = b64(make([]byte, 32))
	keys, err := parseJWKS(mustJSON(map[string]any{"keys": []any{
		ecKeyJWK("ec", &ec.PublicKey),
		map[string]any{"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(edPub)},
		map[string]any{"kty": "EC", "crv": "P-521", "kid": "ec521", "x": b64(p521[1:67]), "y": b64(p521[67:])},
		rsaJWK("rsa", "PS256", &rsaK.PublicKey),
		rsaJWK("rsa-default", "", &rsaK.PublicKey),
		// skipped:
		rsaJWK("small", "RS256", &smallRSA.PublicKey),
		rsaJWK("rsa-as-es", "ES256", &rsaK.PublicKey),
		offCurve,
		map[string]any{"kty": "oct", "kid": "hmac", "k": b64([]byte("secret"))},
		map[string]any{"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc", "x": "", "y": ""},
		map[string]any{"kty": "EC", "crv": "P-256", "kid": "priv", "d": "AAAA"},
	}}))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"ec": "ES256", "ec521": "ES512", "ed": "EdDSA", "rsa": "PS256", "rsa-default": "RS256"}
	if len(keys) != len(want) {
		t.Fatalf("got %d keys, want %d: %v", len(keys), len(want), keys)
	}
	for kid, alg := range want {
		if keys[kid].alg != alg {
			t.Errorf("%s: alg %q, want %q", kid, keys[kid].alg, alg)
		}
	}
	for _, bad := range []string{`not json`, `{"keys":[]}`, `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`} {
		if _, err := parseJWKS([]byte(bad)); err == nil {
			t.Errorf("Parse(%s) succeeded", bad)
		}
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
