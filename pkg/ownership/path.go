package ownership

// Path patterns: find the subscription id (and optionally the country) in
// a request path by configured patterns such as
// "/subscriptions/{subscription_id}/deliveries". It is strict on purpose:
// a path either has exactly one reading or none, so that no spelling of a
// path can make the gateway check one subscription while the upstream
// serves another.

import (
	"errors"
	"fmt"
	"strings"
)

// The placeholders a pattern may use.
const (
	IDPlaceholder      = "{subscription_id}"
	CountryPlaceholder = "{country}"
)

// Pattern is one compiled pattern. It matches a path segment by segment
// from the start; segments after the pattern's last are free, as Kong's
// prefix routes are (the id's position is what the pattern fixes).
type Pattern struct {
	raw      string
	segments []string
	idAt     int
	country  int // -1 when the pattern has no country placeholder
}

// Compile validates a pattern.
func Compile(p string) (Pattern, error) {
	if !strings.HasPrefix(p, "/") {
		return Pattern{}, fmt.Errorf("path pattern %q must start with /", p)
	}
	pat := Pattern{raw: p, segments: strings.Split(strings.TrimSuffix(p[1:], "/"), "/"), idAt: -1, country: -1}
	for i, s := range pat.segments {
		switch {
		case s == IDPlaceholder:
			if pat.idAt >= 0 {
				return Pattern{}, fmt.Errorf("path pattern %q has %s twice", p, IDPlaceholder)
			}
			pat.idAt = i
		case s == CountryPlaceholder:
			if pat.country >= 0 {
				return Pattern{}, fmt.Errorf("path pattern %q has %s twice", p, CountryPlaceholder)
			}
			pat.country = i
		case s == "" || s == "." || s == ".." || strings.ContainsAny(s, "{}%;"):
			return Pattern{}, fmt.Errorf("path pattern %q has an invalid segment %q", p, s)
		}
	}
	if pat.idAt < 0 {
		return Pattern{}, fmt.Errorf("path pattern %q has no %s", p, IDPlaceholder)
	}
	return pat, nil
}

// HasCountry reports whether the pattern names the country.
func (p Pattern) HasCountry() bool { return p.country >= 0 }

// Match is a path's reading under a pattern: the raw segments where the
// placeholders stood (validated by the caller's parsers).
type Match struct {
	ID, Country string
}

// ErrUnsafe is a path that is not in normalized form: Kong's get_path()
// removes dot segments and duplicate slashes, so a path that still has them
// did not come through Kong's normalization and is refused.
var ErrUnsafe = errors.New("path is not normalized (empty, '.' or '..' segment)")

// Find returns the reading of path under the first pattern it matches.
// ok is false when no pattern matches. A trailing slash is allowed.
func Find(patterns []Pattern, path string) (m Match, ok bool, err error) {
	if !strings.HasPrefix(path, "/") {
		return m, false, ErrUnsafe
	}
	segs := strings.Split(strings.TrimSuffix(path[1:], "/"), "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return m, false, ErrUnsafe
		}
	}
	for _, p := range patterns {
		if len(segs) < len(p.segments) {
			continue
		}
		matched := true
		for i, ps := range p.segments {
			if i != p.idAt && i != p.country && ps != segs[i] {
				matched = false
				break
			}
		}
		if !matched {
			continue
		}
		m.ID = segs[p.idAt]
		if p.country >= 0 {
			m.Country = segs[p.country]
		}
		return m, true, nil
	}
	return m, false, nil
}
