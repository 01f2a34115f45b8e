package jwtverify

import (
	"testing"
	"time"
)

// MaxLifetime bounds exp - iat exactly (the token's own two claims, no
// leeway), refuses a token without iat, and is off at zero. A refused token
// is not cached: asking again refuses it again.
func TestMaxLifetime(t *testing.T) {
	s := newSigner(t, "ES256")
	key := s.key(t, "k1")
	lived := func(d time.Duration, withIat bool) string {
		c := claimsAt(t0)
		c["exp"] = t0.Add(d).Unix()
		if !withIat {
			delete(c, "iat")
		}
		return s.sign(t, "k1", c)
	}
	bounded := mustVerifier(t, Config{Keys: []Key{key}, CacheSize: 8, LeewaySeconds: 30, Now: fixedNow(t0), MaxLifetime: 15 * time.Minute})
	for name, c := range map[string]struct {
		token string
		want  Kind
	}{
		"shorter":         {lived(time.Minute, true), 0},
		"exactly the max": {lived(15*time.Minute, true), 0},
		"a second more":   {lived(15*time.Minute+time.Second, true), LifetimeTooLong},
		"a year":          {lived(365*24*time.Hour, true), LifetimeTooLong},
		"no iat":          {lived(time.Minute, false), ClaimMissing},
	} {
		for range 2 { // the second time through the cache
			_, err := bounded.Verify(c.token)
			if c.want == 0 {
				if err != nil {
					t.Errorf("%s: %v", name, err)
				}
				continue
			}
			if KindOf(err) != c.want {
				t.Errorf("%s: %v, want kind %d", name, err, c.want)
			}
		}
	}
	// Off at zero: any lifetime, iat or not.
	unbounded := mustVerifier(t, Config{Keys: []Key{key}, Now: fixedNow(t0)})
	for _, tok := range []string{lived(365*24*time.Hour, true), lived(time.Minute, false)} {
		if _, err := unbounded.Verify(tok); err != nil {
			t.Errorf("MaxLifetime 0 refused: %v", err)
		}
	}
}
