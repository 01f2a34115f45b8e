package jwtclaims

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/denial"
)

func lived(t *testing.T, iat time.Time, lifetime time.Duration, withIat bool) string {
	t.Helper()
	c := jwt.MapClaims{"sub": "alice", "exp": iat.Add(lifetime).Unix()}
	if withIat {
		c["iat"] = iat.Unix()
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	tok.Header["kid"] = "h1"
	s, err := tok.SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// max_lifetime_seconds (Kong jwt's maximum_expiration, Envoy's
// max_lifetime): a longer-lived token gets its own code, so a client does
// not loop fetching another of the same lifetime (token_expired would tell
// it to); a token without iat has no known lifetime. Off by default.
func TestMaxLifetimeSeconds(t *testing.T) {
	now := time.Now()
	hdr := func(tok string) map[string][]string { return map[string][]string{"authorization": {"Bearer " + tok}} }
	d := decider(t, Config{MaxLifetimeSeconds: 3600})
	if _, den := d.verify(hdr(lived(t, now, time.Hour, true))); den != nil {
		t.Fatalf("an hour: %v", den)
	}
	_, den := d.verify(hdr(lived(t, now, time.Hour+time.Second, true)))
	if code(den) != denial.TokenLifetimeTooLong || den.Status != 401 {
		t.Fatalf("an hour and a second: %+v", den)
	}
	if _, den := d.verify(hdr(lived(t, now, time.Minute, false))); code(den) != denial.TokenClaimMissing {
		t.Fatalf("no iat: %v", den)
	}

	var def Config
	config.Defaults(&def)
	if def.MaxLifetimeSeconds != 0 {
		t.Fatalf("max_lifetime_seconds defaults to %d, want 0 (off)", def.MaxLifetimeSeconds)
	}
	off := decider(t, Config{})
	for _, tok := range []string{lived(t, now, 30*24*time.Hour, true), lived(t, now, time.Minute, false)} {
		if _, den := off.verify(hdr(tok)); den != nil {
			t.Fatalf("off: %v", den)
		}
	}
}
