package upstream

import "testing"

func TestHeaderChecks(t *testing.T) {
	for h, want := range map[string]bool{"X-Customer-Id": true, "x1": true, "": false, "X Bad": false, "X:Y": false, "X\r\nY": false, "Ä": false} {
		if ValidName(h) != want {
			t.Errorf("ValidName(%q) != %v", h, want)
		}
	}
	for v, want := range map[string]bool{"abc def": true, "a\r\nX-Admin: 1": false, "a\x00": false, "a\x7f": false, "ü": true} {
		if Safe(v) != want {
			t.Errorf("Safe(%q) != %v", v, want)
		}
	}
	for _, tc := range []struct {
		in   any
		want string
		ok   bool
	}{{"s", "s", true}, {float64(12345678901), "12345678901", true}, {1.5, "1.5", true}, {true, "true", true}, {nil, "", false}, {[]any{"a"}, "", false}} {
		if got, ok := Scalar(tc.in); got != tc.want || ok != tc.ok {
			t.Errorf("Scalar(%v) = %q %v", tc.in, got, ok)
		}
	}
}
