package ownership

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzFind feeds arbitrary paths to the subscription-id extraction: no
// input may panic, a reading is always one whole segment, and an id that
// parses has exactly one spelling (its canonical form), so the gateway and
// the upstream can never read two different ids from one path.
func FuzzFind(f *testing.F) {
	ps := []Pattern{}
	for _, p := range []string{"/subscriptions/{subscription_id}", "/{country}/subs/{subscription_id}/x"} {
		c, err := Compile(p)
		if err != nil {
			f.Fatal(err)
		}
		ps = append(ps, c)
	}
	for _, s := range []string{"/subscriptions/1234", "/subscriptions/01234", "/de/subs/5/x", "/subscriptions/1%2F2",
		"//subscriptions/1", "/subscriptions/../1", "/subscriptions/9223372036854775808", "/subscriptions/+1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		m, ok, err := Find(ps, path)
		if err != nil || !ok {
			return
		}
		if m.ID == "" || strings.Contains(m.ID, "/") || strings.Contains(m.Country, "/") {
			t.Fatalf("%q read as id %q country %q", path, m.ID, m.Country)
		}
		if id, err := ParseID(m.ID); err == nil && strconv.FormatInt(id, 10) != m.ID {
			t.Fatalf("%q: id %q accepted as %d, not its canonical spelling", path, m.ID, id)
		}
	})
}
