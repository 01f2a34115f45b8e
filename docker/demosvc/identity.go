package demosvc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/usercontext"
)

// The identity service's issuer and audience, as kong/kong.yml expects them.
const (
	IdentityIssuer   = "http://identity.demo"
	IdentityAudience = "subgate"
)

// Identity is the demo identity service. It signs customers' JWTs with an
// ES256 key generated at start (never committed), publishes the key as a
// JWKS, answers "who am I" with a user context, and can be switched to
// answer 503 or 408 to show the gateway's fallback behaviour, or to answer
// a context the gateway must refuse (see the Mode constants). With
// PublishEvents it publishes its identity events (pkg/usercontext): a
// user deleted or blocked, a role changed.
type Identity struct {
	key  *ecdsa.PrivateKey
	kid  string
	mode atomic.Value // a Mode
	hits atomic.Int64

	mu       sync.Mutex
	disabled map[string]bool     // customers the service now refuses (401)
	roles    map[string][]string // customers whose roles changed
	events   *usercontext.Publisher
}

// EventsRetention is how long the demo keeps identity events: a day, past
// the longest replay window a route can configure (max_stale_seconds up
// to 86400 plus the deadline; usercontext.EventsWindow).
const EventsRetention = 24*time.Hour + 2*time.Minute

// PublishEvents makes the service publish its identity events on the
// default stream of rdb.
func (i *Identity) PublishEvents(rdb redis.UniversalClient) error {
	p, err := usercontext.NewPublisher(rdb, "", EventsRetention)
	if err != nil {
		return err
	}
	i.mu.Lock()
	i.events = p
	i.mu.Unlock()
	return nil
}

// Change applies an identity change to customer, then publishes its event
// (after the change, so a lookup that begins once the event is applied
// sees the new state): deleted and blocked make /context answer 401,
// role_changed sets the roles /context answers.
func (i *Identity) Change(ctx context.Context, t usercontext.EventType, customer string, roles []string) (string, error) {
	i.mu.Lock()
	switch t {
	case usercontext.UserDeleted, usercontext.UserBlocked:
		i.disabled[customer] = true
	case usercontext.RoleChanged:
		if roles == nil {
			roles = []string{}
		}
		i.roles[customer] = roles
	}
	pub := i.events
	i.mu.Unlock()
	if pub == nil {
		return "", errors.New("identity events are not configured (no Redis)")
	}
	return pub.Publish(ctx, usercontext.Event{Type: t, UserID: customer, At: time.Now()})
}

// NewIdentity generates a signing key.
func NewIdentity() (*Identity, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	var kid [6]byte
	_, _ = rand.Read(kid[:])
	i := &Identity{key: k, kid: "demo-" + base64.RawURLEncoding.EncodeToString(kid[:]), disabled: map[string]bool{}, roles: map[string][]string{}}
	i.mode.Store("ok")
	return i, nil
}

// Token signs a customer's JWT; extra claims are added or replaced, and a
// nil one is left out (a token without iat, say).
func (i *Identity) Token(customer, country string, ttl time.Duration, extra map[string]any) (string, error) {
	now := time.Now()
	c := jwt.MapClaims{"sub": customer, "country": country, "iss": IdentityIssuer, "aud": IdentityAudience,
		"iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	for k, v := range extra {
		c[k] = v
		if v == nil {
			delete(c, k)
		}
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	t.Header["kid"] = i.kid
	return t.SignedString(i.key)
}

// The /context answers SetMode switches between. The last four are
// misbehaving identity services, for the gateway's refusals: a 200 whose
// JSON names user_id twice (another user first, the caller last: a
// last-wins parser such as Go's reads the caller, a first-wins one the
// other user), one with a byte that is not UTF-8, one escaping a lone
// surrogate, one naming OtherUser.
const (
	ModeOK              = "ok"
	Mode503             = "503"
	Mode408             = "408"
	ModeDuplicateMember = "duplicate_member"
	ModeInvalidUTF8     = "invalid_utf8"
	ModeLoneSurrogate   = "lone_surrogate"
	ModeOtherUser       = "other_user"
)

var modes = []string{ModeOK, Mode503, Mode408, ModeDuplicateMember, ModeInvalidUTF8, ModeLoneSurrogate, ModeOtherUser}

// OtherUser is the user the misbehaving modes name instead of the caller.
const OtherUser = "7d3e2a10-1c4b-4a5e-9f00-3c2b1a0000ff"

// SetMode switches the /context answer (a Mode constant).
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
//	POST /admin/mode {"mode": "ok"|"503"|"408"|"duplicate_member"|"invalid_utf8"|"lone_surrogate"|"other_user"}
//	POST /admin/events {"type": "deleted"|"blocked"|"role_changed", "user_id", "roles": [...]}
//	                                   change a user and publish the identity event
//
// A real identity service authenticates its admin API; the demo's listens
// on the demo network only.
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
		roles, changed := i.roles[sub]
		i.mu.Unlock()
		if off {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "account disabled"})
			return
		}
		if !changed {
			roles = []string{"customer"}
		}
		ctx := map[string]any{"user_id": sub, "customer_id": sub, "country": c["country"],
			"roles": roles, "resolved_at": time.Now().UTC().Format(time.RFC3339Nano)}
		switch i.mode.Load().(string) {
		case ModeOtherUser:
			ctx["user_id"], ctx["customer_id"] = OtherUser, OtherUser
		case ModeDuplicateMember:
			b, _ := json.Marshal(ctx)
			other, _ := json.Marshal(OtherUser)
			// {"user_id":OTHER, ...the caller's context, its user_id last}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(append(append([]byte(`{"user_id":`), other...), append([]byte(","), b[1:]...)...))
			return
		case ModeInvalidUTF8:
			b, _ := json.Marshal(ctx)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(append(b[:len(b)-1], []byte(",\"display_name\":\"caf\xff\"}")...))
			return
		case ModeLoneSurrogate:
			b, _ := json.Marshal(ctx)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(append(b[:len(b)-1], []byte(`,"display_name":"caf\ud800"}`)...))
			return
		}
		writeJSON(w, http.StatusOK, ctx)
	})
	mux.HandleFunc("POST /admin/mode", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Mode string `json:"mode"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1024)).Decode(&in); err != nil || !slices.Contains(modes, in.Mode) {
			http.Error(w, `{"error":"mode must be one of `+strings.Join(modes, ", ")+`"}`, http.StatusBadRequest)
			return
		}
		i.SetMode(in.Mode)
		writeJSON(w, http.StatusOK, map[string]string{"mode": in.Mode})
	})
	mux.HandleFunc("POST /admin/events", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Type   usercontext.EventType `json:"type"`
			UserID string                `json:"user_id"`
			Roles  []string              `json:"roles"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in); err != nil || in.UserID == "" ||
			(in.Type != usercontext.UserDeleted && in.Type != usercontext.UserBlocked && in.Type != usercontext.RoleChanged) {
			http.Error(w, `{"error":"type must be deleted, blocked or role_changed, with a user_id"}`, http.StatusBadRequest)
			return
		}
		id, err := i.Change(r.Context(), in.Type, in.UserID, in.Roles)
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"id": id})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
