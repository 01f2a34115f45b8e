package spec

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/docker/demosvc"
	"github.com/subgate/subgate/pkg/ownership"
	"github.com/subgate/subgate/pkg/payevents"
	"github.com/subgate/subgate/pkg/usercontext"
	"github.com/subgate/subgate/spec/stack"
)

// Issue 22's closing corpus, our own: attack and misbehaviour cases by
// class (client bytes, headers, claims, payment tokens, Redis data,
// identity answers, paths, config edges), each through the compiled
// binaries in both shapes (the chain, and subgate under /sg) where the
// route has both, through the stand-in and a real Kong 3.9.3. Besides each
// case's own answer, every one is held to the corpus' two rules: a request
// the case expects denied never reaches the upstream (no false allow), and
// no client or upstream causes a 500 (only a broken config may: 500
// plugin_misconfigured).

// attack is one case. path is the chain's; subgate's is /sg+path when
// both is set.
type attack struct {
	class, name string
	path        string
	both        bool
	header      func(t *testing.T, w *world) http.Header
	identity    http.HandlerFunc // how the identity service answers /context for this case (nil: as the demo does)
	before      func(t *testing.T, w *world)
	after       func(t *testing.T, w *world)
	status      int
	code        string                                   // the denial's code, or kongNoRoute, nginxBadRequest, nginxTooLarge
	check       func(t *testing.T, w *world, r response) // more about an allowed answer
}

// kongNoRoute marks Kong's router's own 404 (no plugin ran).
const kongNoRoute = "no route"

// Customers of their own, so that one case's cached identity answer is
// not another's.
func corpusCustomer(n int) string { return fmt.Sprintf("7d3e2a10-1c4b-4a5e-9f00-3c2b1a%06d", 100+n) }

func TestAttackCorpus(t *testing.T) {
	eachGateway(t, func(t *testing.T, kong string) {
		var misbehave atomic.Pointer[http.HandlerFunc]
		w := setupWith(t, stack.Options{Kong: kong, Wrap: func(service string, h http.Handler) http.Handler {
			if service != "identity" {
				return h
			}
			return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				if f := misbehave.Load(); f != nil && r.URL.Path == "/context" {
					(*f)(rw, r)
					return
				}
				h.ServeHTTP(rw, r)
			})
		}})
		w.waitRoute(t, "/training/plan", alice)
		w.waitRoute(t, "/sg/training/plan", alice)
		cases := corpus()
		counts := map[string]int{}
		runs := 0
		for _, c := range cases {
			t.Run(c.class+"/"+c.name, func(t *testing.T) {
				counts[c.class]++
				if c.before != nil {
					c.before(t, w)
				}
				if c.after != nil {
					defer c.after(t, w)
				}
				if c.identity != nil {
					f := c.identity
					misbehave.Store(&f)
					defer misbehave.Store(nil)
				}
				prefixes := []string{""}
				if c.both {
					prefixes = append(prefixes, "/sg")
				}
				for _, prefix := range prefixes {
					var h http.Header
					if c.header != nil {
						h = c.header(t, w)
					}
					r := w.do(t, "GET", prefix+c.path, h)
					runs++
					judge(t, w, c, prefix, r)
				}
			})
		}
		edges := configEdges(t, w)
		counts["config edges"] = edges
		if len(cases)+edges < 100 {
			t.Errorf("%d cases, want more than 100", len(cases)+edges)
		}
		classes := make([]string, 0, len(counts))
		for k, n := range counts {
			classes = append(classes, fmt.Sprintf("%s %d", k, n))
		}
		sort.Strings(classes)
		t.Logf("%d cases (%s), %d requests", len(cases)+edges, strings.Join(classes, ", "), runs)
	})
}

func judge(t *testing.T, w *world, c attack, prefix string, r response) {
	t.Helper()
	where := "chain"
	if prefix != "" {
		where = "subgate"
	}
	if r.status == 500 && c.status != 500 {
		t.Errorf("%s: a 500 caused by a client or an upstream: %s", where, r.raw)
	}
	if c.status != 200 && r.upstrOK {
		t.Errorf("%s: FALSE ALLOW: the upstream got a request the case expects denied (%d %s)", where, c.status, c.code)
	}
	switch {
	case r.status != c.status:
		t.Errorf("%s: got %d %s, want %d %s", where, r.status, tail(r.raw, 300), c.status, c.code)
	case c.status == 200:
		if !r.upstrOK {
			t.Errorf("%s: 200 without the upstream: %s", where, r.raw)
		} else if c.check != nil {
			c.check(t, w, r)
		}
	case c.code == kongNoRoute:
		if r.body["code"] != nil || !strings.Contains(r.raw, "no Route matched") {
			t.Errorf("%s: want Kong's router's 404, got %s", where, r.raw)
		}
	case c.code == nginxBadRequest || c.code == nginxTooLarge:
		if !strings.Contains(r.raw, c.code) {
			t.Errorf("%s: want nginx's %q, got %s", where, c.code, r.raw)
		}
	default:
		r.wantDenied(t, c.status, c.code)
	}
}

func corpus() []attack {
	var cs []attack
	add := func(a ...attack) { cs = append(cs, a...) }
	tok := func(customer string, extra map[string]any) func(*testing.T, *world) http.Header {
		return func(t *testing.T, w *world) http.Header {
			s, err := w.Identity.Token(customer, "DE", time.Hour, extra)
			if err != nil {
				t.Fatal(err)
			}
			return bearer(s)
		}
	}
	with := func(base func(*testing.T, *world) http.Header, kv ...string) func(*testing.T, *world) http.Header {
		return func(t *testing.T, w *world) http.Header {
			h := base(t, w)
			for i := 0; i+1 < len(kv); i += 2 {
				h.Add(kv[i], kv[i+1])
			}
			return h
		}
	}
	raw := func(v string) func(*testing.T, *world) http.Header {
		return func(*testing.T, *world) http.Header { return http.Header{"Authorization": {v}} }
	}
	alices := tok(alice, nil)

	// Client bytes: what Kong hands a plugin byte for byte.
	for _, b := range []struct{ name, header, value string }{
		{"a Latin-1 byte in a header", "X-Note", "caf\xe9"},
		{"0xff in a header", "X-Note", "\xff"},
		{"a lone continuation byte", "X-Note", "a\x80b"},
		{"an overlong encoding of /", "X-Note", "\xc0\xaf"},
		{"a UTF-16 surrogate in UTF-8", "X-Note", "\xed\xa0\x80"},
		{"a truncated sequence", "X-Note", "\xe2\x82"},
		{"a Latin-1 cookie", "Cookie", "city=K\xf6ln"},
		{"a Latin-1 user agent", "User-Agent", "M\xfcller/1.0"},
		{"a Latin-1 Accept-Language", "Accept-Language", "fr-\xe9"},
	} {
		add(attack{class: "client bytes", name: b.name, path: "/me", both: true, header: with(alices, b.header, b.value), status: 400, code: "request_bytes_invalid"})
	}
	add(
		attack{class: "client bytes", name: "a byte that is not UTF-8 after the token", path: "/me", both: true,
			header: func(t *testing.T, w *world) http.Header { return bearer(w.token(t, alice, "DE", time.Hour) + "\xff") }, status: 400, code: "request_bytes_invalid"},
		attack{class: "client bytes", name: "a payment token with 0xff", path: "/training/plan", both: true, header: with(alices, "X-Payment-Token", "ey\xff"), status: 400, code: "request_bytes_invalid"},
		attack{class: "client bytes", name: "a Latin-1 header on the whole chain", path: "/coach/subscriptions/1234", both: true, header: with(alices, "X-Note", "\xe9"), status: 400, code: "request_bytes_invalid"},
		attack{class: "client bytes", name: "a Latin-1 cookie to user-context alone", path: "/account", header: with(alices, "Cookie", "sid=\xe9"), status: 400, code: "request_bytes_invalid"},
		attack{class: "client bytes", name: "an emoji (UTF-8) is fine", path: "/me", both: true, header: with(alices, "X-Note", "\U0001F600 café"), status: 200},
		attack{class: "client bytes", name: "a path %FF (Kong's router)", path: "/subscriptions/4242%FF", both: true, header: alices, status: 404, code: kongNoRoute},
		attack{class: "client bytes", name: "a path with an overlong /", path: "/subscriptions/1234%C0%AF5678", both: true, header: alices, status: 404, code: kongNoRoute},
		attack{class: "client bytes", name: "a path with a truncated sequence", path: "/me/%E2%82", both: true, header: alices, status: 404, code: kongNoRoute},
		attack{class: "client bytes", name: "a path with a euro sign (UTF-8)", path: "/subscriptions/1234%E2%82%AC", both: true, header: alices, status: 400, code: "subscription_id_invalid"},
	)

	// Headers: spoofing, duplicates, limits.
	spoofed := func(name, value string) func(*testing.T, *world) http.Header { return with(alices, name, value) }
	upstream := func(name, want string) func(*testing.T, *world, response) {
		return func(t *testing.T, _ *world, r response) {
			if r.upstrm[name] != want {
				t.Errorf("upstream %s = %q, want %q", name, r.upstrm[name], want)
			}
		}
	}
	add(
		attack{class: "headers", name: "a spoofed X-Customer-Id", path: "/me", both: true, header: spoofed("X-Customer-Id", bob), status: 200, check: upstream("X-Customer-Id", alice)},
		attack{class: "headers", name: "a spoofed X-Country", path: "/me", both: true, header: spoofed("X-Country", "FR"), status: 200, check: upstream("X-Country", "DE")},
		attack{class: "headers", name: "a spoofed X-Subscription-Verified", path: "/subscriptions/1234", both: true, header: spoofed("X-Subscription-Verified", "FR:1234"), status: 200, check: upstream("X-Subscription-Verified", "DE:1234")},
		attack{class: "headers", name: "a spoofed X-User-Id", path: "/whoami", both: true, header: spoofed("X-User-Id", bob), status: 200, check: upstream("X-User-Id", alice)},
		attack{class: "headers", name: "a spoofed X-User-Context-Source", path: "/whoami", both: true, header: spoofed("X-User-Context-Source", "cache"), status: 200, check: upstream("X-User-Context-Source", "identity")},
		attack{class: "headers", name: "a spoofed X-User-Context", path: "/whoami", both: true, header: spoofed("X-User-Context", `{"user_id":"`+bob+`"}`), status: 200,
			check: func(t *testing.T, _ *world, r response) {
				if !strings.Contains(r.upstrm["X-User-Context"], alice) || strings.Contains(r.upstrm["X-User-Context"], bob) {
					t.Errorf("upstream X-User-Context %q", r.upstrm["X-User-Context"])
				}
			}},
		attack{class: "headers", name: "the payment token never reaches the upstream", path: "/training/plan", both: true, header: paid, status: 200,
			check: func(t *testing.T, _ *world, r response) {
				if _, ok := r.upstrm["X-Payment-Token"]; ok {
					t.Error("the upstream got X-Payment-Token")
				}
			}},
		attack{class: "headers", name: "two Authorization headers", path: "/me", both: true, header: with(alices, "Authorization", "Bearer x"), status: 400, code: nginxBadRequest},
		attack{class: "headers", name: "Bearer without a token", path: "/me", both: true, header: raw("Bearer"), status: 401, code: "token_missing"},
		attack{class: "headers", name: "another scheme", path: "/me", both: true, header: raw("Basic YWxpY2U6c2VjcmV0"), status: 401, code: "token_missing"},
		attack{class: "headers", name: "a tab after Bearer", path: "/me", both: true, header: func(t *testing.T, w *world) http.Header {
			return http.Header{"Authorization": {"Bearer\t" + w.token(t, alice, "DE", time.Hour)}}
		}, status: 401, code: "token_missing"},
		attack{class: "headers", name: "the scheme in lower case", path: "/me", both: true, header: func(t *testing.T, w *world) http.Header {
			return http.Header{"Authorization": {"bearer " + w.token(t, alice, "DE", time.Hour)}}
		}, status: 200},
		attack{class: "headers", name: "no token, a cookie instead", path: "/me", both: true, header: func(t *testing.T, w *world) http.Header {
			return http.Header{"Cookie": {"access_token=" + w.token(t, alice, "DE", time.Hour)}}
		}, status: 401, code: "token_missing"},
		attack{class: "headers", name: "the token in the query string only", path: "/me?access_token=x", both: true, status: 401, code: "token_missing"},
		attack{class: "headers", name: "two X-Payment-Token headers", path: "/training/plan", both: true, header: func(t *testing.T, w *world) http.Header {
			h := paid(t, w)
			h.Add("X-Payment-Token", h.Get("X-Payment-Token"))
			return h
		}, status: 401, code: "payment_token_invalid"},
		attack{class: "headers", name: "an empty X-Payment-Token", path: "/training/plan", both: true, header: with(alices, "X-Payment-Token", ""), status: 401, code: "payment_token_missing"},
		attack{class: "headers", name: "1000 header lines", path: "/me", both: true, header: func(t *testing.T, w *world) http.Header {
			return http.Header(padded(1000, "Authorization", "Bearer "+w.token(t, alice, "DE", time.Hour)))
		}, status: 431, code: "request_headers_too_many"},
		attack{class: "headers", name: "a header line past nginx's buffer", path: "/me", both: true, header: with(alices, "X-Pad", strings.Repeat("p", 9000)), status: 400, code: nginxTooLarge},
	)

	// Claims of the bearer token.
	claim := func(name string, extra map[string]any, status int, code string) attack {
		return attack{class: "claims", name: name, path: "/me", both: true, header: tok(alice, extra), status: status, code: code}
	}
	now := time.Now()
	add(
		claim("expired", map[string]any{"exp": now.Add(-time.Hour).Unix()}, 401, "token_expired"),
		claim("no exp", map[string]any{"exp": nil}, 401, "token_claim_missing"),
		claim("exp as a string", map[string]any{"exp": fmt.Sprint(now.Add(time.Hour).Unix())}, 401, "token_malformed"),
		claim("exp past year 9999", map[string]any{"exp": int64(253402300800)}, 401, "token_malformed"),
		claim("nbf in an hour", map[string]any{"nbf": now.Add(time.Hour).Unix()}, 401, "token_not_yet_valid"),
		claim("iat in an hour", map[string]any{"iat": now.Add(time.Hour).Unix()}, 401, "token_not_yet_valid"),
		claim("another issuer", map[string]any{"iss": "http://evil.example"}, 401, "token_issuer_invalid"),
		claim("iss as a number", map[string]any{"iss": 7}, 401, "token_malformed"),
		claim("another audience", map[string]any{"aud": "someone-else"}, 401, "token_audience_invalid"),
		claim("an audience list holding ours", map[string]any{"aud": []string{"other", "subgate"}}, 200, ""),
		claim("aud as a number", map[string]any{"aud": 1}, 401, "token_malformed"),
		claim("sub as a number", map[string]any{"sub": 12345}, 401, "token_malformed"),
		claim("an empty sub", map[string]any{"sub": ""}, 401, "token_claim_missing"),
		claim("a sub with CRLF", map[string]any{"sub": "alice\r\nX-Admin: 1"}, 401, "token_claim_missing"),
		claim("a sub of 300 bytes", map[string]any{"sub": strings.Repeat("a", 300)}, 401, "token_claim_missing"),
		claim("jti as a number", map[string]any{"jti": 1}, 401, "token_malformed"),
		claim("an escaped lone surrogate in a claim", map[string]any{"name": json.RawMessage(`"caf\ud800"`)}, 401, "token_malformed"),
		claim("an escaped surrogate pair in a claim", map[string]any{"name": json.RawMessage(`"\ud83d\ude00"`)}, 200, ""),
		claim("country as a number reads as its digits", map[string]any{"country": 49}, 200, ""),
		claim("no iat, no lifetime bound on the route", map[string]any{"iat": nil}, 200, ""),
	)
	forged := func(mutate func(h, c map[string]any) (alg jwt.SigningMethod, key any)) func(*testing.T, *world) http.Header {
		return func(t *testing.T, w *world) http.Header {
			var jwks struct {
				Keys []struct {
					Kid string `json:"kid"`
				} `json:"keys"`
			}
			if err := json.Unmarshal(w.Identity.JWKS(), &jwks); err != nil || len(jwks.Keys) == 0 {
				t.Fatalf("identity JWKS: %v", err)
			}
			h := map[string]any{"kid": jwks.Keys[0].Kid}
			c := map[string]any{"sub": alice, "country": "DE", "iss": demosvc.IdentityIssuer, "aud": demosvc.IdentityAudience,
				"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
			alg, key := mutate(h, c)
			tk := jwt.NewWithClaims(alg, jwt.MapClaims(c))
			for k, v := range h {
				tk.Header[k] = v
			}
			s, err := tk.SignedString(key)
			if err != nil {
				t.Fatal(err)
			}
			return bearer(s)
		}
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b64 := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	payload := b64(map[string]any{"sub": alice, "iss": demosvc.IdentityIssuer, "aud": demosvc.IdentityAudience, "exp": time.Now().Add(time.Hour).Unix()})
	add(
		attack{class: "claims", name: "alg none", path: "/me", both: true, header: raw("Bearer " + b64(map[string]any{"alg": "none"}) + "." + payload + "."), status: 401, code: "token_invalid_signature"},
		attack{class: "claims", name: "HS256 keyed with the public JWKS (key confusion)", path: "/me", both: true, header: func(t *testing.T, w *world) http.Header {
			return forged(func(h, c map[string]any) (jwt.SigningMethod, any) { return jwt.SigningMethodHS256, w.Identity.JWKS() })(t, w)
		}, status: 401, code: "token_invalid_signature"},
		attack{class: "claims", name: "signed by another key under the identity's kid", path: "/me", both: true,
			header: forged(func(h, c map[string]any) (jwt.SigningMethod, any) { return jwt.SigningMethodES256, other }), status: 401, code: "token_invalid_signature"},
		attack{class: "claims", name: "an unknown kid", path: "/me", both: true,
			header: forged(func(h, c map[string]any) (jwt.SigningMethod, any) {
				h["kid"] = "../../etc/passwd"
				return jwt.SigningMethodES256, other
			}), status: 401, code: "token_unknown_key"},
		attack{class: "claims", name: "a jku header pointing elsewhere", path: "/me", both: true,
			header: forged(func(h, c map[string]any) (jwt.SigningMethod, any) {
				h["jku"], h["kid"] = "http://evil.example/jwks.json", "evil"
				return jwt.SigningMethodES256, other
			}), status: 401, code: "token_unknown_key"},
		attack{class: "claims", name: "a payment token as the bearer token", path: "/me", both: true, header: func(t *testing.T, w *world) http.Header {
			p, err := w.Payment.Token(alice, []string{"coach"}, false)
			if err != nil {
				t.Fatal(err)
			}
			return bearer(p.Token)
		}, status: 401, code: "token_malformed"},
		attack{class: "claims", name: "garbage", path: "/me", both: true, header: raw("Bearer abc"), status: 401, code: "token_malformed"},
		attack{class: "claims", name: "five segments (JWE)", path: "/me", both: true, header: raw("Bearer a.b.c.d.e"), status: 401, code: "token_malformed"},
		attack{class: "claims", name: "the signature stripped", path: "/me", both: true, header: func(t *testing.T, w *world) http.Header {
			s := w.token(t, alice, "DE", time.Hour)
			return bearer(s[:strings.LastIndexByte(s, '.')+1])
		}, status: 401, code: "token_invalid_signature"},
		attack{class: "claims", name: "a fourth segment", path: "/me", both: true, header: func(t *testing.T, w *world) http.Header {
			return bearer(w.token(t, alice, "DE", time.Hour) + ".x")
		}, status: 401, code: "token_malformed"},
		attack{class: "claims", name: "alice's token for bob's subscription", path: "/subscriptions/5678", both: true, header: alices, status: 403, code: "subscription_forbidden"},
		attack{class: "claims", name: "alice's token with country FR", path: "/subscriptions/1234", both: true, header: func(t *testing.T, w *world) http.Header {
			return bearer(w.token(t, alice, "FR", time.Hour))
		}, status: 403, code: "subscription_forbidden"},
		attack{class: "claims", name: "no country claim", path: "/subscriptions/1234", both: true, header: tok(alice, map[string]any{"country": nil}), status: 403, code: "subscription_forbidden"},
	)

	// Payment tokens.
	payment := func(name string, make func(t *testing.T, w *world) string, status int, code string) attack {
		return attack{class: "payment tokens", name: name, path: "/training/plan", both: true, status: status, code: code, header: func(t *testing.T, w *world) http.Header {
			h := bearer(w.token(t, alice, "DE", time.Hour))
			h.Set("X-Payment-Token", make(t, w))
			return h
		}}
	}
	issued := func(customer string, ents []string, expired bool) func(*testing.T, *world) string {
		return func(t *testing.T, w *world) string {
			p, err := w.Payment.Token(customer, ents, expired)
			if err != nil {
				t.Fatal(err)
			}
			return p.Token
		}
	}
	at := func(iat time.Time, ttl time.Duration) func(*testing.T, *world) string {
		return func(t *testing.T, w *world) string {
			p, err := w.Payment.TokenIssued(alice, []string{"coach"}, iat, ttl)
			if err != nil {
				t.Fatal(err)
			}
			return p.Token
		}
	}
	revokedCustomer := corpusCustomer(99)
	add(
		payment("a valid one", issued(alice, []string{"coach"}, false), 200, ""),
		payment("another customer's", issued(bob, []string{"coach"}, false), 403, "payment_token_customer_mismatch"),
		payment("expired", issued(alice, []string{"coach"}, true), 401, "payment_token_expired"),
		payment("without the entitlement", issued(alice, []string{"nutrition"}, false), 403, "entitlement_missing"),
		payment("no entitlements", issued(alice, nil, false), 403, "entitlement_missing"),
		payment("the bearer JWT as the payment token", func(t *testing.T, w *world) string { return w.token(t, alice, "DE", time.Hour) }, 401, "payment_token_invalid"),
		payment("garbage", func(*testing.T, *world) string { return "not-a-token" }, 401, "payment_token_invalid"),
		payment("issued in an hour", at(time.Now().Add(time.Hour), 5*time.Minute), 401, "payment_token_invalid"),
		payment("living a day, longer than revocations are kept", at(time.Now(), 24*time.Hour), 401, "payment_token_invalid"),
		attack{class: "payment tokens", name: "revoked by a cancellation", path: "/training/plan", both: true, status: 401, code: "payment_token_revoked",
			header: func(t *testing.T, w *world) http.Header {
				p, err := w.Payment.TokenIssued(revokedCustomer, []string{"coach"}, time.Now().Add(-2*time.Second), 5*time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				h := bearer(w.token(t, revokedCustomer, "DE", time.Hour))
				h.Set("X-Payment-Token", p.Token)
				return h
			},
			before: func(t *testing.T, w *world) {
				if _, err := w.Payment.Publish(context.Background(), payevents.Cancellation, revokedCustomer); err != nil {
					t.Fatal(err)
				}
				time.Sleep(300 * time.Millisecond) // the followers apply it within their poll
			}},
	)

	// Redis data the ownership check reads, written around the writer.
	layout := ownership.Layout{Prefix: ownership.DefaultPrefix}
	hset := func(id int64, v []byte) (func(*testing.T, *world), func(*testing.T, *world)) {
		return func(t *testing.T, w *world) {
				if err := w.RDB.HSet(context.Background(), layout.Key("DE", id), layout.Field(id), v).Err(); err != nil {
					t.Fatal(err)
				}
			}, func(t *testing.T, w *world) {
				w.RDB.Del(context.Background(), layout.Key("DE", id))
			}
	}
	aliceUUID, _ := ownership.ParseUUID(alice)
	bobUUID, _ := ownership.ParseUUID(bob)
	redisCase := func(name string, id int64, v []byte, status int, code string) attack {
		b, a := hset(id, v)
		return attack{class: "redis data", name: name, path: fmt.Sprintf("/subscriptions/%d", id), both: true, header: alices, before: b, after: a, status: status, code: code}
	}
	add(
		redisCase("an owner of 15 bytes", 7001, aliceUUID[:15], 503, "ownership_unavailable"),
		redisCase("an owner of 17 bytes", 7002, append(aliceUUID[:], 0), 503, "ownership_unavailable"),
		redisCase("the owner as text, not 16 bytes", 7003, []byte(alice), 503, "ownership_unavailable"),
		redisCase("an empty owner", 7004, []byte{}, 503, "ownership_unavailable"),
		redisCase("another customer", 7005, bobUUID[:], 403, "subscription_forbidden"),
		redisCase("alice, written as the writer does", 7006, aliceUUID[:], 200, ""),
		attack{class: "redis data", name: "the bucket holds a string (WRONGTYPE)", path: "/subscriptions/7007", both: true, header: alices, status: 503, code: "ownership_unavailable",
			before: func(t *testing.T, w *world) { w.RDB.Set(context.Background(), layout.Key("DE", 7007), "x", 0) },
			after:  func(t *testing.T, w *world) { w.RDB.Del(context.Background(), layout.Key("DE", 7007)) }},
		attack{class: "redis data", name: "a bucket without the field", path: "/subscriptions/7008", both: true, header: alices, status: 403, code: "subscription_forbidden",
			before: func(t *testing.T, w *world) {
				w.RDB.HSet(context.Background(), layout.Key("DE", 7008), "1", aliceUUID[:])
			},
			after: func(t *testing.T, w *world) { w.RDB.Del(context.Background(), layout.Key("DE", 7008)) }},
		attack{class: "redis data", name: "junk on the payment-event stream", path: "/training/plan", both: true, header: paid, status: 200,
			before: func(t *testing.T, w *world) {
				for _, v := range []map[string]any{{"junk": "x"}, {"type": "cancellation"}, {"type": "meteor", "customer_id": alice, "at": "x"}} {
					w.RDB.XAdd(context.Background(), &redis.XAddArgs{Stream: payevents.DefaultStream, Values: v})
				}
				time.Sleep(200 * time.Millisecond)
			}},
		attack{class: "redis data", name: "junk on the identity-event stream", path: "/whoami", both: true, header: alices, status: 200,
			before: func(t *testing.T, w *world) {
				w.RDB.XAdd(context.Background(), &redis.XAddArgs{Stream: usercontext.DefaultEventsStream, Values: map[string]any{"junk": "\xff"}})
				time.Sleep(200 * time.Millisecond)
			}},
	)

	// Identity answers, each for a customer of its own (nothing cached).
	n := 0
	answer := func(name string, f http.HandlerFunc, status int, code string) attack {
		n++
		customer := corpusCustomer(n)
		return attack{class: "identity answers", name: name, path: "/whoami", both: true, identity: f, header: tok(customer, nil), status: status, code: code}
	}
	reply := func(status int, contentType, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if contentType != "" {
				w.Header().Set("Content-Type", contentType)
			}
			w.WriteHeader(status)
			_, _ = w.Write([]byte(strings.ReplaceAll(body, "SUB", subOf(r))))
		}
	}
	add(
		answer("200, not JSON", reply(200, "application/json", "hello"), 502, "identity_error"),
		answer("200, a JSON array", reply(200, "application/json", `[{"user_id":"SUB"}]`), 502, "identity_error"),
		answer("200, user_id a number", reply(200, "application/json", `{"user_id":7}`), 502, "identity_error"),
		answer("200, no user_id", reply(200, "application/json", `{"customer_id":"SUB"}`), 502, "identity_error"),
		answer("200, HTML", reply(200, "text/html", `{"user_id":"SUB"}`), 502, "identity_error"),
		answer("200, no content type", reply(200, "", `{"user_id":"SUB"}`), 502, "identity_error"),
		answer("200, a second value after the object", reply(200, "application/json", `{"user_id":"SUB"} {"user_id":"x"}`), 502, "identity_error"),
		answer("200, a member twice, nested", reply(200, "application/json", `{"user_id":"SUB","profile":{"tier":"free","tier":"gold"}}`), 502, "identity_error"),
		answer("200, user_id twice", reply(200, "application/json", `{"user_id":"`+demosvc.OtherUser+`","user_id":"SUB"}`), 502, "identity_error"),
		answer("200, an escaped lone surrogate", reply(200, "application/json", `{"user_id":"SUB","name":"caf\udc00"}`), 502, "identity_error"),
		answer("200, an escaped surrogate pair", reply(200, "application/json", `{"user_id":"SUB","name":"\ud83d\ude00"}`), 200, ""),
		answer("200, a byte that is not UTF-8", reply(200, "application/json", "{\"user_id\":\"SUB\",\"name\":\"caf\xe9\"}"), 502, "identity_error"),
		answer("200, larger than max_body_bytes", reply(200, "application/json", `{"user_id":"SUB","pad":"`+strings.Repeat("x", 70000)+`"}`), 502, "identity_error"),
		answer("200, too large for the context header", reply(200, "application/json", `{"user_id":"SUB","pad":"`+strings.Repeat("x", 5000)+`"}`), 502, "identity_error"),
		answer("200, an empty body", reply(200, "application/json", ""), 502, "identity_error"),
		answer("200, null", reply(200, "application/json", "null"), 502, "identity_error"),
		answer("200, another user", reply(200, "application/json", `{"user_id":"`+demosvc.OtherUser+`"}`), 403, "identity_user_mismatch"),
		answer("200, problem+json, well formed", reply(200, "application/problem+json", `{"user_id":"SUB","note":"a\u0000b"}`), 200, ""),
		answer("302 to elsewhere", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://evil.example/ctx", http.StatusFound)
		}, 502, "identity_error"),
		answer("404", reply(404, "application/json", `{}`), 404, "identity_rejected"),
		answer("429", reply(429, "application/json", `{}`), 429, "identity_rejected"),
		answer("401", reply(401, "application/json", `{}`), 401, "identity_unauthorized"),
		answer("403", reply(403, "application/json", `{}`), 403, "identity_forbidden"),
		answer("500", reply(500, "application/json", `{}`), 502, "identity_error"),
		answer("502", reply(502, "text/html", `<html>bad gateway</html>`), 502, "identity_error"),
		answer("503, nothing cached", reply(503, "application/json", `{}`), 503, "identity_unavailable"),
		answer("408 on every attempt", reply(408, "application/json", `{}`), 504, "identity_timeout"),
		answer("slower than the deadline", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(3 * time.Second):
			}
		}, 504, "identity_timeout"),
		answer("the connection dropped", func(w http.ResponseWriter, r *http.Request) {
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
				}
			}
		}, 504, "identity_timeout"),
	)

	// Paths: spellings Kong normalizes, and ones it keeps.
	path := func(p string, status int, code string) attack {
		return attack{class: "paths", name: p, path: p, both: true, header: alices, status: status, code: code}
	}
	add(
		path("/subscriptions/1234/deliveries", 200, ""),
		path("/subscriptions/1234?subscription_id=5678", 200, ""),
		path("/subscriptions/01234", 400, "subscription_id_invalid"),
		path("/subscriptions/1234%2F5678", 400, "subscription_id_invalid"),
		path("/subscriptions/1234;v=5678", 400, "subscription_id_invalid"),
		path("/subscriptions/-1234", 400, "subscription_id_invalid"),
		path("/subscriptions/+1234", 400, "subscription_id_invalid"),
		path("/subscriptions/%D9%A1%D9%A2%D9%A3%D9%A4", 400, "subscription_id_invalid"),
		path("/subscriptions/99999999999999999999", 400, "subscription_id_invalid"),
		path("/subscriptions/1234%00", 400, nginxBadRequest),
		path("/subscriptions", 400, "subscription_id_invalid"),
		path("/subscriptions/1234/../5678", 403, "subscription_forbidden"),
		path("/subscriptions/1234/%2e%2e/5678", 403, "subscription_forbidden"),
		path("/subscriptions//5678", 403, "subscription_forbidden"),
		path("/subscriptions/%35678", 403, "subscription_forbidden"),
		path("/SUBSCRIPTIONS/5678", 404, kongNoRoute),
	)
	return cs
}

// subOf is the sub of the request's bearer token (unverified: the test's
// identity service only echoes it).
func subOf(r *http.Request) string {
	parts := strings.Split(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), ".")
	if len(parts) != 3 {
		return ""
	}
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct {
		Sub string `json:"sub"`
	}
	_ = json.Unmarshal(b, &c)
	return c.Sub
}

// configEdges: configs Kong refuses at load (POST /config answers 400 and
// the running config serves on), and configs Kong's schema cannot refuse,
// which the plugin refuses at instance start: 500 plugin_misconfigured on
// their route, never a request let through (make validate refuses them
// first: spec/validate). It returns how many it ran.
func configEdges(t *testing.T, w *world) int {
	yml, err := os.ReadFile("../kong/kong.yml")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := w.Reload(yml); err != nil {
			t.Errorf("reloading kong.yml: %v", err)
		}
	}()
	route := func(name, plugins string) string {
		return fmt.Sprintf("\n      - name: %[1]s\n        paths: [/%[1]s]\n        strip_path: false\n        plugins:\n%[2]s", name, plugins)
	}
	jwtThen := func(plugin, cfg string) string {
		return "          - name: jwt-claims\n            config: *jwt\n          - name: " + plugin + "\n            config: " + cfg + "\n"
	}
	refused := []struct{ name, routes string }{
		{"an HS256 secret of 5 bytes", route("ce-hs", "          - name: jwt-claims\n            config: {keys: [{kid: a, algorithm: HS256, secret: \"12345\"}]}\n")},
		{"jwks_url not a url", route("ce-jwks", "          - name: jwt-claims\n            config: {jwks_url: not a url}\n")},
		{"a Redis address without a port", route("ce-port", jwtThen("subscription-owner", "{redis: {addresses: [redis]}}"))},
		{"Cluster with master_name", route("ce-cluster", jwtThen("subscription-owner", "{redis: {addresses: [\"r:1\"], cluster: true, master_name: m}}"))},
		{"identity_url ftp://", route("ce-ftp", "          - name: user-context\n            config: {identity_url: \"ftp://identity/context\"}\n")},
		{"identity_url without a scheme", route("ce-noscheme", "          - name: user-context\n            config: {identity_url: \"identity:8080/context\"}\n")},
		{"keys: [] without jwks_url", route("ce-keys", "          - name: jwt-claims\n            config: {keys: []}\n")},
		{"a route with pathz", "\n      - name: ce-typo\n        pathz: [/ce-typo]\n        paths: [/ce-typo]\n"},
	}
	ran := 0
	for _, c := range refused {
		t.Run("config edges/refused at load: "+c.name, func(t *testing.T) {
			ran++
			if err := w.Reload(append(append([]byte(nil), yml...), c.routes...)); err == nil {
				t.Fatal("accepted")
			}
			w.do(t, "GET", "/me", bearer(w.token(t, alice, "DE", time.Hour))).wantAllowed(t) // the running config serves on
		})
	}
	startRefused := []struct{ name, path, routes string }{
		{"several Redis addresses without a mode", "/ce-modes/1234", route("ce-modes", jwtThen("subscription-owner", "{redis: {addresses: [\"r-1:6379\", \"r-2:6379\"]}, path_patterns: [\"/ce-modes/{subscription_id}\"]}"))},
		{"a path pattern with an unknown placeholder", "/ce-placeholder/1234/DE", route("ce-placeholder", jwtThen("subscription-owner", "{redis: *redis, path_patterns: [\"/ce-placeholder/{subscription_id}/{countrry}\"]}"))},
		{"a secret as a vault reference and a file", "/ce-secret", route("ce-secret", "          - name: jwt-claims\n            config: {keys: [{kid: a, algorithm: HS256, secret: \"{vault://env/SUBGATE_CORPUS_UNSET}\", secret_file: /nonexistent/hs}]}\n")},
		{"a subgate section's log_decisions", "/ce-section", route("ce-section", "          - name: subgate\n            config: {jwt: {<<: *jwt, log_decisions: all}}\n")},
		{"a public key that is not PEM", "/ce-pem", route("ce-pem", "          - name: jwt-claims\n            config: {keys: [{kid: a, algorithm: RS256, public_key: not-a-key}]}\n")},
		{"the token header among the upstream headers", "/ce-upstream", route("ce-upstream", "          - name: jwt-claims\n            config: {<<: *jwt, upstream_headers: {Authorization: sub}}\n")},
	}
	var all []byte
	all = append(all, yml...)
	for _, c := range startRefused {
		all = append(all, c.routes...)
	}
	if err := w.Reload(all); err != nil {
		t.Fatalf("Kong refused configs its schema cannot judge: %v", err)
	}
	// Kong 3.9.3 answers POST /config before it applies it, and a request in
	// the switch may run a new route without its plugins (see
	// TestKongAppliesANewConfig): wait it out, as nothing here tests that.
	time.Sleep(time.Second)
	for _, c := range startRefused {
		t.Run("config edges/refused at instance start: "+c.name, func(t *testing.T) {
			ran++
			r := w.do(t, "GET", c.path, bearer(w.token(t, alice, "DE", time.Hour)))
			if r.upstrOK {
				t.Fatalf("FALSE ALLOW: %d %s", r.status, r.raw)
			}
			r.wantDenied(t, 500, "plugin_misconfigured")
		})
	}
	return ran
}
