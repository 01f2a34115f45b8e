package demosvc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The identity service's issuer and audience, as kong/kong.yml expects them.
const (
	IdentityIssuer   = "http://identity.demo"
	IdentityAudience = "subgate"
)

// Identity is the demo identity service. It signs customers' JWTs with an
// ES256 key generated at start (never committed), publishes the key as a
// JWKS, answers "who am I" with a user context, and can be switched to
// answer 503 or 408 to show the gateway's fallback behaviour.
type Identity struct {
	key  *ecdsa.PrivateKey
	kid  string
	mode atomic.Value // "ok", "503", "408"
	hits atomic.Int64

	mu       sync.Mutex
	disabled map[string]bool // customers the service now refuses (401)
}

// NewIdentity generates a signing key.
func NewIdentity() (*Identity, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	var kid [6]byte
	_, _ = rand.Read(kid[:])
	i := &Identity{key: k, kid: "demo-" + base64.RawURLEncoding.EncodeToString(kid[:]), disabled: map[string]bool{}}
	i.mode.Store("ok")
	return i, nil
}

// Token signs a customer's JWT.
func (i *Identity) Token(customer, country string, ttl time.Duration, extra map[string]any) (string, error) {
	now := time.Now()
	c := jwt.MapClaims{"sub": customer, "country": country, "iss": IdentityIssuer, "aud": IdentityAudience,
		"iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	for k, v := range extra {
		c[k] = v
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	t.Header["kid"] = i.kid
	return t.SignedString(i.key)
}

// SetMode switches the /context answer: "ok", "503" or "408".
func (i *Identity) SetMode(m string) { i.mode.Store(m) }

// Disable makes /context answer 401 for customer (an account disabled).
func (i *Identity) Disable(customer string, off bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.disabled[customer] = off
}

// Hits counts /context requests.
func (i *Identity) Hits() int64 { return i.hits.Load() }

// JWKS is the public key set.
func (i *Identity) JWKS() []byte {
	b := func(x []byte) string { return base64.RawURLEncoding.EncodeToString(x) }
	doc, _ := json.Marshal(map[string]any{"keys": []map[string]any{{
		"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": i.kid,
		"x": b(i.key.X.FillBytes(make([]byte, 32))), "y": b(i.key.Y.FillBytes(make([]byte, 32))),
	}}})
	return doc
}

// Handler serves:
//
//	GET  /.well-known/jwks.json        the signing key
//	POST /token {"customer_id","country","ttl_seconds"}   a JWT (demo login)
//	GET  /context                      the caller's user context (Bearer JWT)
//	POST /admin/mode {"mode": "ok"|"503"|"408"}
func (i *Identity) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(i.JWKS())
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			CustomerID string `json:"customer_id"`
			Country    string `json:"country"`
			TTLSeconds int    `json:"ttl_seconds"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in); err != nil || in.CustomerID == "" {
			http.Error(w, `{"error":"customer_id required"}`, http.StatusBadRequest)
			return
		}
		if in.TTLSeconds <= 0 {
			in.TTLSeconds = 3600
		}
		tok, err := i.Token(in.CustomerID, in.Country, time.Duration(in.TTLSeconds)*time.Second, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"access_token": tok, "token_type": "Bearer"})
	})
	mux.HandleFunc("GET /context", func(w http.ResponseWriter, r *http.Request) {
		i.hits.Add(1)
		switch i.mode.Load().(string) {
		case "503":
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "identity service unavailable (demo switch)"})
			return
		case "408":
			writeJSON(w, http.StatusRequestTimeout, map[string]string{"error": "request timeout (demo switch)"})
			return
		}
		raw := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		c := jwt.MapClaims{}
		_, err := jwt.ParseWithClaims(raw, c, func(*jwt.Token) (any, error) { return &i.key.PublicKey, nil },
			jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(IdentityIssuer), jwt.WithExpirationRequired())
		if err != nil {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid credentials"})
			return
		}
		sub, _ := c["sub"].(string)
		i.mu.Lock()
		off := i.disabled[sub]
		i.mu.Unlock()
		if off {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "account disabled"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"user_id": sub, "customer_id": sub, "country": c["country"],
			"roles": []string{"customer"}, "resolved_at": time.Now().UTC().Format(time.RFC3339Nano)})
	})
	mux.HandleFunc("POST /admin/mode", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Mode string `json:"mode"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1024)).Decode(&in); err != nil ||
			(in.Mode != "ok" && in.Mode != "503" && in.Mode != "408") {
			http.Error(w, `{"error":"mode must be ok, 503 or 408"}`, http.StatusBadRequest)
			return
		}
		i.SetMode(in.Mode)
		writeJSON(w, http.StatusOK, map[string]string{"mode": in.Mode})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
