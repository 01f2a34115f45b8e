package usercontext

import (
	"context"
	"strings"
	"testing"

	"github.com/subgate/subgate/pkg/check"
	"github.com/subgate/subgate/pkg/claims"
	"github.com/subgate/subgate/pkg/denial"
)

// An identity answer two readers could read differently is refused (502
// identity_error) and never cached: a member twice at any depth (the
// gateway keeps the last copy, many upstream parsers the first), a byte
// that is not UTF-8 (the gateway would read U+FFFD, the upstream the raw
// JSON; Kong's protocol refuses it in a header: a 500 before), an escaped
// lone surrogate (U+FFFD to the gateway, the surrogate upstream), a context
// that cannot travel in the upstream header.
func TestAmbiguousAnswersAreRefusedAndNeverCached(t *testing.T) {
	id := newIdentity(t, ok("u1"))
	c := client(t, id.srv.URL, func(o *Config) { o.MaxContextHeaderBytes = 200 })
	for name, body := range map[string]string{
		"duplicate user id":      `{"user_id":"bob","roles":["customer"],"user_id":"alice"}`,
		"duplicate, escaped":     `{"user_id":"bob","user\u005fid":"alice"}`,
		"duplicate, nested":      `{"user_id":"alice","org":{"role":"member","role":"admin"}}`,
		"duplicate, in an array": `{"user_id":"alice","grants":[{"plan":"free","plan":"premium"}]}`,
		"invalid byte in value":  "{\"user_id\":\"alice\",\"name\":\"caf\xff\"}",
		"invalid byte in id":     "{\"user_id\":\"ali\xc3ce\"}",
		"invalid byte in name":   "{\"user_id\":\"alice\",\"n\xffme\":1}",
		"overlong encoding":      "{\"user_id\":\"alice\",\"x\":\"\xc0\xaf\"}",
		"surrogate as UTF-8":     "{\"user_id\":\"alice\",\"x\":\"\xed\xa0\x80\"}",
		"escaped lone surrogate": `{"user_id":"alice\ud800"}`,
		"escaped lone low one":   `{"user_id":"alice","n":{"\udc00":1}}`,
		"too large for header":   `{"user_id":"alice","pad":"` + strings.Repeat("x", 200) + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			cred := map[string]string{"Authorization": "Bearer " + name}
			id.set(answer{status: 200, body: body})
			_, d := c.Lookup(context.Background(), cred)
			wantCode(t, d, denial.IdentityError, 502)
			if d.Cause == "" {
				t.Error("no cause for the operator")
			}
			id.set(answer{status: 503})
			_, d = c.Lookup(context.Background(), cred)
			wantCode(t, d, denial.IdentityUnavailable, 503) // nothing was cached
		})
	}
	// The same shapes without the ambiguity pass: the rule refuses only it.
	for name, body := range map[string]string{
		"same name, other objects": `{"user_id":"alice","a":{"role":"x"},"b":{"role":"y"}}`,
		"non-ASCII":                `{"user_id":"alice","name":"café","city":"\u00e9vry"}`,
		"an escaped pair":          `{"user_id":"alice","emoji":"\ud83d\ude00","path":"c:\\ud800"}`,
	} {
		id.set(answer{status: 200, body: body})
		if out, d := c.Lookup(context.Background(), map[string]string{"Authorization": "Bearer " + name}); d != nil || out.UserID != "alice" {
			t.Errorf("%s: %+v %v", name, out, d)
		}
	}
}

func decider(t *testing.T, url string, mod func(*Config)) *Decider {
	t.Helper()
	o := Config{IdentityURL: url, AttemptTimeoutMs: 200, BackoffMs: 1, DeadlineMs: 2000, MaxStaleSeconds: 60, RetryAfterSeconds: 1}
	if mod != nil {
		mod(&o)
	}
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func verified(customer string, named map[string]any) *claims.Verified {
	return &claims.Verified{V: 1, CustomerID: customer, Claims: named}
}

// match_user (on by default): an answer naming another user than the
// verified token is refused with its own code, fresh or cached, and is
// never cached; the credentials' earlier answer is forgotten.
func TestAnswerForAnotherUserIsRefused(t *testing.T) {
	id := newIdentity(t, ok("alice"))
	d := decider(t, id.srv.URL, nil)
	hdrs := map[string][]string{"authorization": {"Bearer t"}, "cookie": {"session=s"}}
	if up, _, den := d.lookup(context.Background(), hdrs, verified("alice", nil)); den != nil || up["X-User-Id"] != "alice" {
		t.Fatalf("matching answer: %v %v", up, den)
	}

	// The identity service now names bob for these credentials.
	id.set(ok("bob"))
	_, _, den := d.lookup(context.Background(), hdrs, verified("alice", nil))
	wantCode(t, den, denial.IdentityUserMismatch, 403)
	if !strings.Contains(den.Cause, `"bob"`) || !strings.Contains(den.Cause, `"alice"`) {
		t.Errorf("cause %q names neither user", den.Cause)
	}
	// Neither bob's answer nor alice's older one is cached now.
	id.set(answer{status: 503})
	_, _, den = d.lookup(context.Background(), hdrs, verified("alice", nil))
	wantCode(t, den, denial.IdentityUnavailable, 503)
	_, _, den = d.lookup(context.Background(), hdrs, verified("bob", nil))
	wantCode(t, den, denial.IdentityUnavailable, 503)

	// A cached copy of another user is refused too: the cache is keyed by
	// the credentials, and these now come with another user's token.
	id.set(ok("carol"))
	cred := map[string][]string{"cookie": {"session=carol"}}
	if _, _, den := d.lookup(context.Background(), cred, verified("carol", nil)); den != nil {
		t.Fatal(den)
	}
	id.set(answer{status: 503})
	_, _, den = d.lookup(context.Background(), cred, verified("dave", nil))
	wantCode(t, den, denial.IdentityUserMismatch, 403)
	if _, res, den := d.lookup(context.Background(), cred, verified("carol", nil)); den != nil || !res.Cached {
		t.Fatalf("carol's own cached copy: %+v %v", res, den)
	}
}

func TestMatchUserModes(t *testing.T) {
	id := newIdentity(t, ok("bob"))
	hdrs := map[string][]string{"authorization": {"Bearer t"}}
	ctx := context.Background()

	// verified (default): no token verified on the route, nothing to match.
	if _, _, den := decider(t, id.srv.URL, nil).lookup(ctx, hdrs, nil); den != nil {
		t.Fatalf("verified without claims: %v", den)
	}
	// required: a route without jwt-claims is refused.
	_, _, den := decider(t, id.srv.URL, func(o *Config) { o.MatchUser = MatchRequired }).lookup(ctx, hdrs, nil)
	wantCode(t, den, denial.ClaimsMissing, 401)
	if !strings.Contains(den.Cause, "misconfigured") {
		t.Errorf("cause %q", den.Cause)
	}
	// off: whoever the identity service names.
	off := decider(t, id.srv.URL, func(o *Config) { o.MatchUser = MatchOff })
	if off.Reads()&check.OptionalClaims != 0 {
		t.Error("off reads the claims")
	}
	if up, _, den := off.lookup(ctx, hdrs, verified("alice", nil)); den != nil || up["X-User-Id"] != "bob" {
		t.Fatalf("off: %v %v", up, den)
	}
	// match_claim: another verified claim than the customer id.
	byEmail := decider(t, id.srv.URL, func(o *Config) { o.MatchClaim = "uid" })
	if _, _, den := byEmail.lookup(ctx, hdrs, verified("c-1", map[string]any{"uid": "bob"})); den != nil {
		t.Fatalf("match_claim uid=bob: %v", den)
	}
	_, _, den = byEmail.lookup(ctx, hdrs, verified("bob", map[string]any{"uid": "alice"}))
	wantCode(t, den, denial.IdentityUserMismatch, 403)
	_, _, den = byEmail.lookup(ctx, hdrs, verified("bob", map[string]any{"uid": []any{"bob"}}))
	wantCode(t, den, denial.TokenClaimMissing, 401)
	_, _, den = byEmail.lookup(ctx, hdrs, verified("bob", nil))
	wantCode(t, den, denial.TokenClaimMissing, 401)

	// The declaration refuses an unknown mode (as Kong's schema does).
	var o Config
	o.IdentityURL, o.MatchUser = id.srv.URL, "sometimes"
	if _, err := New(o); err == nil {
		t.Error("match_user sometimes accepted")
	}
}
