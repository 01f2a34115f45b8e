package jwtverify

import (
	"math"

	"github.com/subgate/subgate/pkg/metrics"
)

// The age of each JWKS URL's keys: what a stale-keys alert watches (past
// jwks_max_stale_seconds, tokens are answered 503 keys_unavailable).
func init() {
	metrics.RegisterGaugeFunc("subgate_jwks_refresh_age_seconds",
		"Seconds since the keys of a JWKS URL were last fetched successfully (+Inf: never). The URL is shown without user info or query.",
		[]string{"jwks_url"}, func(emit func(float64, ...string)) {
			// Several sets (other settings) may fetch one URL: the freshest counts.
			ages := map[string]float64{}
			sets.Range(func(_ string, s *Set) {
				age := math.Inf(1)
				if d, ok := s.RefreshAge(); ok {
					age = d.Seconds()
				}
				u := metrics.URLLabel(s.URL())
				if old, seen := ages[u]; !seen || age < old {
					ages[u] = age
				}
			})
			for u, age := range ages {
				emit(age, u)
			}
		})
}
