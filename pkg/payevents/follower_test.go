package payevents

import (
	"testing"
	"time"
)

// The wait between attempts doubles from 50 ms and stops at maxBackoff:
// once Redis is back the follower is at most a second late, and its state
// stale for at most that long beyond the outage.
func TestBackoffIsBoundedByASecond(t *testing.T) {
	d, waits := 50*time.Millisecond, []time.Duration{}
	for range 8 {
		d = nextBackoff(d)
		waits = append(waits, d)
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000, 1000}
	for i, w := range want {
		if waits[i] != w*time.Millisecond {
			t.Fatalf("waits %v, want %v ms", waits, want)
		}
	}
}
