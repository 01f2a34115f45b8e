// Package upstream holds what every plugin applies to the headers the
// gateway sends upstream: the set of names the gateway owns on a route
// (set or removed, so a client's copy never passes), valid names, values
// without control characters (so a claim or a context can never split or
// smuggle a header), and the rendering of a JSON scalar as a header value.
package upstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/subgate/subgate/pkg/config"
)

// Own validates header names and returns them canonical, sorted and
// without duplicates: the headers a route owns.
func Own(names []string) ([]string, error) {
	var errs []error
	out := make([]string, 0, len(names))
	for _, h := range names {
		if !ValidName(h) {
			errs = append(errs, fmt.Errorf("%q is not a valid upstream header name", h))
			continue
		}
		out = append(out, http.CanonicalHeaderKey(h))
	}
	slices.Sort(out)
	return slices.Compact(out), errors.Join(errs...)
}

// Values returns a client header's values from Kong's header table (names
// lower-cased by Kong; any case accepted for tables built elsewhere).
func Values(h map[string][]string, name string) []string {
	if v, ok := h[strings.ToLower(name)]; ok {
		return v
	}
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

// HeaderName is the pattern of a header name the gateway reads or sets:
// letters, digits and dashes (the Kong schema's match on every such field,
// so Kong refuses another at load).
var HeaderName = config.Pattern("header_name", "^[%w%-]+$", "expected a header name (letters, digits and -)")

// ValidName reports whether h is a header name made of letters, digits and dashes.
func ValidName(h string) bool { return config.Matches(HeaderName, h) }

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
// value; numbers without an exponent, so a numeric id reads as its digits.
// Other types have no header form.
func Scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}
