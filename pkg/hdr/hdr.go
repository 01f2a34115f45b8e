// Package hdr holds the checks every plugin applies to what it puts in an
// upstream header: a valid name, a value without control characters (so a
// claim or a context can never split or smuggle a header), and the
// rendering of a JSON scalar as a header value.
package hdr

import "strconv"

// ValidName reports whether h is a header name made of letters, digits and dashes.
func ValidName(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c == '-' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// Safe reports whether v has no control characters.
func Safe(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// Scalar renders a decoded JSON scalar (string, number, bool) as a header
// value; other types have no header form.
func Scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}
