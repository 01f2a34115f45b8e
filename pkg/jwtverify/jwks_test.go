package jwtverify

import (
	"crypto/ecdsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

func ecJWK(kid string, s signer) map[string]any {
	j := ecKeyJWK(kid, s.pub.(*ecdsa.PublicKey))
	j["alg"] = "ES256"
	return j
}

func jwksServer(t *testing.T) (url string, publish func(keys ...map[string]any), down func(bool)) {
	var mu sync.Mutex
	var doc []byte
	failing := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			w.WriteHeader(503)
			return
		}
		_, _ = w.Write(doc)
	}))
	t.Cleanup(srv.Close)
	publish = func(keys ...map[string]any) {
		mu.Lock()
		doc, _ = json.Marshal(map[string]any{"keys": keys})
		mu.Unlock()
	}
	down = func(d bool) { mu.Lock(); failing = d; mu.Unlock() }
	return srv.URL, publish, down
}

func TestJWKSRotationInvalidatesCache(t *testing.T) {
	a, b := newSigner(t, "ES256"), newSigner(t, "ES256")
	url, publish, _ := jwksServer(t)
	publish(ecJWK("a", a))
	now := t0
	v := mustVerifier(t, Config{JWKSURL: url, JWKSMinRefetchSeconds: 1, CacheSize: 16, Now: func() time.Time { return now }})
	tokA := a.sign(t, "a", claimsAt(t0))
	if _, err := v.Verify(tokA); err != nil {
		t.Fatal(err)
	}
	if hit, err := v.Verify(tokA); err != nil || !hit.Cached {
		t.Fatalf("want cache hit: %v", err)
	}
	// Rotate: b replaces a. A token signed by b triggers the refetch...
	publish(ecJWK("b", b))
	now = now.Add(time.Second)
	if _, err := v.Verify(b.sign(t, "b", claimsAt(t0))); err != nil {
		t.Fatalf("token of the new key: %v", err)
	}
	// ...and a's cached token is not served any more: its key is withdrawn.
	_, err := v.Verify(tokA)
	wantKind(t, err, UnknownKey)
}

func TestJWKSUnreachableIsKeysUnavailable(t *testing.T) {
	a := newSigner(t, "ES256")
	url, publish, down := jwksServer(t)
	publish(ecJWK("a", a))
	down(true)
	v := mustVerifier(t, Config{JWKSURL: url + "/never-up", Now: fixedNow(t0)})
	_, err := v.Verify(a.sign(t, "a", claimsAt(t0)))
	wantKind(t, err, KeysUnavailable)
}

func TestJWKSRefusesAlgOtherThanPublished(t *testing.T) {
	a := newSigner(t, "ES256")
	url, publish, _ := jwksServer(t)
	publish(ecJWK("a", a))
	v := mustVerifier(t, Config{JWKSURL: url + "/alg", Now: fixedNow(t0)})
	// An HS256 token naming the JWK's kid, keyed with the public JWK's JSON.
	h := signer{alg: "HS256", priv: []byte(`{"kty":"EC"}`)}
	_, err := v.Verify(h.sign(t, "a", claimsAt(t0)))
	wantKind(t, err, InvalidSignature)
}

// A Verifier with a test's clock owns its key set: a second one on the same
// URL (as when a later test's server reuses a closed one's port) fetches
// for itself instead of taking the first one's keys, fetched on the first
// one's clock (CI once failed a payment test on such a set: JWKS
// unreachable).
func TestHookedVerifiersDoNotShareKeySets(t *testing.T) {
	a, b := newSigner(t, "ES256"), newSigner(t, "ES256")
	url, publish, _ := jwksServer(t)
	publish(ecJWK("a", a))
	first := mustVerifier(t, Config{JWKSURL: url, Now: fixedNow(t0)})
	if _, err := first.Verify(a.sign(t, "a", claimsAt(t0))); err != nil {
		t.Fatal(err)
	}
	publish(ecJWK("b", b))
	second := mustVerifier(t, Config{JWKSURL: url, Now: fixedNow(t0)})
	if _, err := second.Verify(b.sign(t, "b", claimsAt(t0))); err != nil {
		t.Fatalf("the second verifier used the first one's keys: %v", err)
	}
}
