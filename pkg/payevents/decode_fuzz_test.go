package payevents

import (
	"testing"

	"github.com/redis/go-redis/v9"
)

// FuzzDecode feeds arbitrary stream entries to the event decoder: no input
// may panic, and an entry is accepted only with a known type, a customer
// and a numeric time.
func FuzzDecode(f *testing.F) {
	f.Add("cancellation", "7d3e2a10-1c4b-4a5e-9f00-3c2b1a000001", "1700000000000")
	f.Add("reactivation", "c1", "0")
	f.Add("block", "", "1")
	f.Add("refund", "c1", "not-a-number")
	f.Add("unknown", "c1", "1")
	f.Fuzz(func(t *testing.T, typ, customer, at string) {
		e, err := decode(redis.XMessage{ID: "1-0", Values: map[string]any{"type": typ, "customer": customer, "at": at}})
		if err != nil {
			return
		}
		if !e.Type.valid() || e.CustomerID == "" || e.CustomerID != customer {
			t.Fatalf("accepted %+v from type %q customer %q at %q", e, typ, customer, at)
		}
	})
}
