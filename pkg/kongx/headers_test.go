package kongx

import (
	"fmt"
	"testing"

	"github.com/subgate/subgate/pkg/denial"
)

// Kong cuts get_headers at maxHeaders lines without telling the plugin: a
// request at the limit is refused, counting lines (values), not names.
func TestHeaderCountAtKongsLimitIsRefused(t *testing.T) {
	lines := func(names, perName int) map[string][]string {
		h := map[string][]string{}
		for i := range names {
			h[fmt.Sprintf("x-%d", i)] = make([]string, perName)
		}
		return h
	}
	for _, c := range []struct {
		name string
		h    map[string][]string
		deny bool
	}{
		{"999 names", lines(999, 1), false},
		{"1000 names", lines(1000, 1), true},
		{"one name, 1000 lines", lines(1, 1000), true},
		{"500 names twice", lines(500, 2), true},
		{"333 names thrice", lines(333, 3), false},
	} {
		d := checkHeaderCount(c.h)
		if (d != nil) != c.deny || (d != nil && (d.Code != denial.TooManyHeaders || d.Status != 431)) {
			t.Errorf("%s: got %+v, want deny=%v", c.name, d, c.deny)
		}
	}
}
