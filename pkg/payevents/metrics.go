package payevents

import (
	"math"

	"github.com/subgate/subgate/pkg/metrics"
)

// The stream followers, per stream (the payment events' and the identity
// events'): how long since Redis last answered (the staleness a
// payment-token check, or a user-context fallback, fails closed on) and the
// events applied. Followers of one stream at several settings are
// combined: the worst lag, the sum of events.
func init() {
	metrics.RegisterGaugeFunc("subgate_revocation_follower_lag_seconds",
		"Seconds since the follower of a stream (payment events, identity events) last heard from Redis (+Inf: never).",
		[]string{"stream"}, func(emit func(float64, ...string)) {
			lags := map[string]float64{}
			followers.Range(func(_ string, f *Follower) {
				lag := math.Inf(1)
				if d, ok := f.Lag(); ok {
					lag = d.Seconds()
				}
				if old, seen := lags[f.Stream()]; !seen || lag > old {
					lags[f.Stream()] = lag
				}
			})
			for s, v := range lags {
				emit(v, s)
			}
		})
	metrics.RegisterGaugeFunc("subgate_stream_state_entries",
		"Entries the followers of a stream hold: customers with a revocation in the replay window (payment events), users with an event in it (identity events).",
		[]string{"stream"}, func(emit func(float64, ...string)) {
			sums := map[string]float64{}
			followers.Range(func(_ string, f *Follower) {
				if s, ok := f.h.(interface{ Len() int }); ok {
					sums[f.Stream()] += float64(s.Len())
				}
			})
			for s, v := range sums {
				emit(v, s)
			}
		})
	metrics.RegisterCounterFunc("subgate_revocation_events_applied_total",
		"Events the followers of a stream (payment events, identity events) applied since the plugin server started.",
		[]string{"stream"}, func(emit func(float64, ...string)) {
			sums := map[string]float64{}
			followers.Range(func(_ string, f *Follower) { sums[f.Stream()] += float64(f.Applied()) })
			for s, v := range sums {
				emit(v, s)
			}
		})
}
