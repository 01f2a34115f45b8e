package chain

import (
	"context"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/subgate/subgate/pkg/check"
	"github.com/subgate/subgate/pkg/claims"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/jwtverify"
	"github.com/subgate/subgate/pkg/ownership"
	"github.com/subgate/subgate/pkg/redisconn"
	"github.com/subgate/subgate/pkg/usercontext"
)

func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil))) // the panic test's error line
	os.Exit(m.Run())
}

// fake is a section: decide says what it decides; it owns owned and
// (when reads is not nil) names the headers it reads, as the identity
// check does.
type fake struct {
	owned  []string
	reads  []string
	decide func(ctx context.Context, req *check.Request) (check.Decision, *denial.Denial)
}

func (f *fake) Reads() check.Reads { return check.Headers }
func (f *fake) Owned() []string    { return f.owned }
func (f *fake) Decide(ctx context.Context, req *check.Request, _ *check.Audit) (check.Decision, *denial.Denial) {
	return f.decide(ctx, req)
}

// reader is a fake that names the headers it reads (startable early).
type reader struct{ fake }

func (r *reader) HeadersRead() []string { return r.reads }

func allow(context.Context, *check.Request) (check.Decision, *denial.Denial) {
	return check.Decision{}, nil
}

func deny(code denial.Code) func(context.Context, *check.Request) (check.Decision, *denial.Denial) {
	return func(context.Context, *check.Request) (check.Decision, *denial.Denial) {
		return check.Decision{}, denial.New(code, "")
	}
}

// verified is the jwt section: it allows, with claims and an upstream
// header.
var verified = &fake{owned: []string{"X-Customer-Id"}, decide: func(context.Context, *check.Request) (check.Decision, *denial.Denial) {
	return check.Decision{Claims: &claims.Verified{CustomerID: "c1"}, Upstream: map[string]string{"X-Customer-Id": "c1"}}, nil
}}

// build makes a decider of the sections given, with identity_lookup mode.
func build(mode string, sections ...section) *Decider {
	d := &Decider{sections: sections}
	if mode == IdentityParallel {
		for i := range d.sections {
			d.sections[i].early = overlappable(d.sections, i)
		}
	}
	return d
}

func decide(d *Decider) *denial.Denial {
	req := &check.Request{Headers: map[string][]string{"authorization": {"Bearer x"}}}
	_, den := d.Decide(context.Background(), req, &check.Audit{})
	return den
}

// The identity check runs while the ownership check waits: ownership
// allows only once identity has been asked, which never happens if they
// run one after the other (the test would time out).
func TestIdentityOverlapsOwnership(t *testing.T) {
	asked := make(chan struct{})
	own := &fake{decide: func(ctx context.Context, _ *check.Request) (check.Decision, *denial.Denial) {
		select {
		case <-asked:
			return check.Decision{}, nil
		case <-time.After(5 * time.Second):
			return check.Decision{}, denial.New(denial.OwnershipUnavailable, "identity was not asked while ownership waited")
		}
	}}
	id := &reader{fake{reads: []string{"Authorization"}, decide: func(context.Context, *check.Request) (check.Decision, *denial.Denial) {
		close(asked)
		return check.Decision{}, nil
	}}}
	d := build(IdentityParallel, section{name: "jwt", Decider: verified}, section{name: "ownership", Decider: own}, section{name: "identity", Decider: id})
	if den := decide(d); den != nil {
		t.Fatal(den.Code, den.Message)
	}
}

// The first failing check in the chain's order answers, whichever
// finishes first; a denial ahead of the identity check cancels it.
func TestDenialOrderAndCancellation(t *testing.T) {
	for _, c := range []struct {
		name          string
		own, pay, id  denial.Code // "" allows
		want          denial.Code
		wantCancelled bool
	}{
		{"ownership denies, identity denies first", denial.SubscriptionForbidden, "", denial.IdentityUnauthorized, denial.SubscriptionForbidden, false},
		{"ownership denies, identity in flight", denial.SubscriptionForbidden, "", "", denial.SubscriptionForbidden, true},
		{"payment denies, identity allows", "", denial.PaymentTokenMissing, "", denial.PaymentTokenMissing, true},
		{"identity denies alone", "", "", denial.IdentityForbidden, denial.IdentityForbidden, false},
		{"all allow", "", "", "", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			idDone := make(chan struct{})
			var cancelled atomic.Bool
			answer := func(code denial.Code) func(context.Context, *check.Request) (check.Decision, *denial.Denial) {
				if code == "" {
					return allow
				}
				return deny(code)
			}
			own := &fake{decide: func(ctx context.Context, req *check.Request) (check.Decision, *denial.Denial) {
				if c.id != "" {
					<-idDone // identity has decided (and denied) before ownership answers
				}
				return answer(c.own)(ctx, req)
			}}
			id := &reader{fake{reads: []string{"Authorization"}, decide: func(ctx context.Context, req *check.Request) (check.Decision, *denial.Denial) {
				defer close(idDone)
				if c.id != "" {
					return answer(c.id)(ctx, req)
				}
				select { // an allow waits for its caller's verdict
				case <-ctx.Done():
					cancelled.Store(true)
					return check.Decision{}, denial.New(denial.IdentityTimeout, "")
				case <-time.After(200 * time.Millisecond):
					return check.Decision{}, nil
				}
			}}}
			d := build(IdentityParallel, section{name: "jwt", Decider: verified}, section{name: "ownership", Decider: own},
				section{name: "payment", Decider: &fake{decide: answer(c.pay)}}, section{name: "identity", Decider: id})
			den := decide(d)
			if got := codeOf(den); got != c.want {
				t.Fatalf("answered %q, want %q", got, c.want)
			}
			select {
			case <-idDone:
			case <-time.After(5 * time.Second):
				t.Fatal("the identity check never ended")
			}
			if cancelled.Load() != c.wantCancelled {
				t.Errorf("identity cancelled: %v, want %v", cancelled.Load(), c.wantCancelled)
			}
		})
	}
}

func codeOf(d *denial.Denial) denial.Code {
	if d == nil {
		return ""
	}
	return d.Code
}

// A token that did not verify never reaches the identity check, in either
// mode; with sequential, neither does a request an earlier check denied.
func TestIdentityNotAskedWhenNotAllowedTo(t *testing.T) {
	for _, c := range []struct {
		mode      string
		jwt, own  denial.Code
		wantAsked bool
	}{
		{IdentityParallel, denial.TokenInvalidSignature, "", false},
		{IdentitySequential, denial.TokenInvalidSignature, "", false},
		{IdentitySequential, "", denial.SubscriptionForbidden, false},
		{IdentityParallel, "", denial.SubscriptionForbidden, true}, // the documented cost of parallel
	} {
		var asked atomic.Bool
		jwt := verified
		if c.jwt != "" {
			jwt = &fake{decide: deny(c.jwt)}
		}
		own := &fake{decide: allow}
		if c.own != "" {
			own.decide = func(ctx context.Context, req *check.Request) (check.Decision, *denial.Denial) {
				time.Sleep(20 * time.Millisecond) // identity, started early, is asked meanwhile
				return deny(c.own)(ctx, req)
			}
		}
		id := &reader{fake{reads: []string{"Authorization"}, decide: func(context.Context, *check.Request) (check.Decision, *denial.Denial) {
			asked.Store(true)
			return check.Decision{}, nil
		}}}
		d := build(c.mode, section{name: "jwt", Decider: jwt}, section{name: "ownership", Decider: own}, section{name: "identity", Decider: id})
		want := c.jwt
		if want == "" {
			want = c.own
		}
		if got := codeOf(decide(d)); got != want {
			t.Errorf("%+v: answered %q", c, got)
		}
		time.Sleep(50 * time.Millisecond) // an early identity check ends on its own
		if asked.Load() != c.wantAsked {
			t.Errorf("%+v: identity asked %v", c, asked.Load())
		}
	}
}

// The early identity check sees the request as the chain would show it:
// the jwt section's upstream headers applied, its claims, and never the
// later sections' changes, which it waits not for.
func TestEarlyIdentitySeesTheRequestAfterJWT(t *testing.T) {
	var seen check.Request
	id := &reader{fake{reads: []string{"X-Customer-Id"}, decide: func(_ context.Context, req *check.Request) (check.Decision, *denial.Denial) {
		seen = *req
		return check.Decision{}, nil
	}}}
	d := build(IdentityParallel, section{name: "jwt", Decider: verified}, section{name: "payment", Decider: &fake{decide: allow}}, section{name: "identity", Decider: id})
	if !d.sections[2].early {
		t.Fatal("not started early")
	}
	if den := decide(d); den != nil {
		t.Fatal(den.Code)
	}
	if v := seen.Headers["x-customer-id"]; len(v) != 1 || v[0] != "c1" || seen.Claims == nil || seen.Claims.CustomerID != "c1" {
		t.Fatalf("identity saw headers %v, claims %+v", seen.Headers, seen.Claims)
	}
}

// Where a section between jwt and identity owns a header identity reads,
// identity must read that section's value, as in the chain: it is not
// started early.
func TestNotOverlappedWhenAnEarlierSectionOwnsWhatIdentityReads(t *testing.T) {
	sets := &fake{owned: []string{"X-Subscription-Verified"}, decide: func(context.Context, *check.Request) (check.Decision, *denial.Denial) {
		return check.Decision{Upstream: map[string]string{"X-Subscription-Verified": "DE:1"}}, nil
	}}
	var got []string
	id := &reader{fake{reads: []string{"x-subscription-verified"}, decide: func(_ context.Context, req *check.Request) (check.Decision, *denial.Denial) {
		got = req.Headers["x-subscription-verified"]
		return check.Decision{}, nil
	}}}
	d := build(IdentityParallel, section{name: "jwt", Decider: verified}, section{name: "ownership", Decider: sets}, section{name: "identity", Decider: id})
	if d.sections[2].early {
		t.Fatal("started early though ownership owns a header it reads")
	}
	if den := decide(d); den != nil || len(got) != 1 || got[0] != "DE:1" {
		t.Fatalf("%v: identity read %v", den, got)
	}
	// Right after jwt there is nothing to overlap with.
	if build(IdentityParallel, section{name: "jwt", Decider: verified}, section{name: "identity", Decider: id}).sections[1].early {
		t.Error("started early with nothing between")
	}
}

// A panic in an early section is a 500 for that request, never a dead
// plugin server.
func TestPanicInAnEarlySectionIsA500(t *testing.T) {
	id := &reader{fake{reads: []string{"Authorization"}, decide: func(context.Context, *check.Request) (check.Decision, *denial.Denial) {
		panic("boom")
	}}}
	d := build(IdentityParallel, section{name: "jwt", Decider: verified}, section{name: "ownership", Decider: &fake{decide: allow}}, section{name: "identity", Decider: id})
	den := decide(d)
	if den == nil || den.Code != denial.InternalError || den.Status != 500 || !strings.Contains(den.Cause, "boom") {
		t.Fatalf("%+v", den)
	}
}

// identity_lookup through New: parallel by default (a Go caller's zero
// value too), sequential on request, anything else refused; the real
// identity check is the one started early, and only with a check between.
func TestIdentityLookupSetting(t *testing.T) {
	conf := func(mode string) Config {
		c := Config{IdentityLookup: mode, Identity: &usercontext.Config{IdentityURL: "http://127.0.0.1:1/context"},
			Ownership: &ownership.Config{Redis: redisconn.Config{Addresses: []string{"127.0.0.1:1"}}}}
		c.JWT.Keys = []jwtverify.Key{{Algorithm: "HS256", Secret: strings.Repeat("k", 32)}}
		return c
	}
	for mode, early := range map[string]bool{"": true, IdentityParallel: true, IdentitySequential: false} {
		d, err := New(conf(mode))
		if err != nil {
			t.Fatalf("%q: %v", mode, err)
		}
		if names := []string{d.sections[0].name, d.sections[1].name, d.sections[2].name}; names[2] != "identity" || d.sections[2].early != early || d.sections[1].early {
			t.Errorf("%q: sections %v, early %v %v", mode, names, d.sections[1].early, d.sections[2].early)
		}
		c := conf(mode)
		c.Ownership = nil // jwt and identity alone: nothing to overlap
		if d, err = New(c); err != nil || d.sections[1].early {
			t.Errorf("%q: identity started early right after jwt (%v)", mode, err)
		}
	}
	if _, err := New(conf("eventually")); err == nil || !strings.Contains(err.Error(), "identity_lookup") {
		t.Fatalf("accepted identity_lookup eventually: %v", err)
	}
}

// Early sections run on workers kept between requests (a new goroutine's
// stack would grow to the HTTP client's depth each time): one after the
// other, requests reuse one worker.
func TestEarlySectionsReuseAWorker(t *testing.T) {
	seen := map[string]bool{}
	id := &reader{fake{reads: []string{"Authorization"}, decide: func(context.Context, *check.Request) (check.Decision, *denial.Denial) {
		buf := make([]byte, 64)
		seen[strings.Fields(string(buf[:runtime.Stack(buf, false)]))[1]] = true // "goroutine N [running]:"
		return check.Decision{}, nil
	}}}
	d := build(IdentityParallel, section{name: "jwt", Decider: verified}, section{name: "ownership", Decider: &fake{decide: allow}}, section{name: "identity", Decider: id})
	for range 20 {
		if den := decide(d); den != nil {
			t.Fatal(den.Code)
		}
		time.Sleep(time.Millisecond) // the worker is back waiting for work
	}
	if len(seen) > 2 {
		t.Errorf("20 requests one after the other ran the identity section on %d goroutines", len(seen))
	}
}
