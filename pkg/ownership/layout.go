// Package ownership owns the Redis layout of subscription → customer pairs
// and the subscription-owner plugin's decision on it (check.go, path.go).
// The writer (the backend that creates subscriptions) and the reader (the
// plugin) both use it, so the layout lives in one place.
//
// Layout v1: a pair (country, subscription id) → customer UUID is stored as
//
//	HSET {prefix}v1:{COUNTRY}:{id / 100}  {id % 100}  <16 raw UUID bytes>
//
// Each hash holds at most 100 pairs, below Redis's hash-max-listpack-entries
// (128 by default), so Redis keeps it in the compact listpack encoding; the
// field is one or two ASCII digits and the value 16 bytes. The country is in
// the key because subscription ids are unique per country only.
package ownership

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/subgate/subgate/pkg/config"
)

// Version is the layout version, part of every key so a later layout can
// live next to this one during a migration.
const Version = "v1"

// BucketSize is the number of subscription ids per hash.
const BucketSize = 100

// DefaultPrefix is the key prefix unless configured otherwise.
var DefaultPrefix = config.Define("ownership_prefix", "subgate:own:")

// MaxID bounds subscription ids: the backend's ids are positive integers
// and fit in an int64.
const MaxID = 1<<63 - 1

// Layout maps pairs to Redis keys and fields under a prefix.
type Layout struct{ Prefix string }

// Key is the hash holding id's pair.
func (l Layout) Key(country string, id int64) string {
	return l.Prefix + Version + ":" + country + ":" + strconv.FormatInt(id/BucketSize, 10)
}

// Field is id's field within its hash.
func (l Layout) Field(id int64) string { return strconv.FormatInt(id%BucketSize, 10) }

// Country validates and normalises an ISO 3166-1 alpha-2 code ("de" → "DE").
func Country(s string) (string, error) {
	if len(s) != 2 || !isLetter(s[0]) || !isLetter(s[1]) {
		return "", fmt.Errorf("country %q is not a two-letter ISO 3166-1 code", s)
	}
	return strings.ToUpper(s), nil
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// ErrID is returned for anything that is not a canonical subscription id.
var ErrID = errors.New("not a canonical subscription id (ASCII digits, no sign, no leading zero, 1 to 2^63-1)")

// ParseID accepts only the canonical decimal spelling of a positive id, so
// that one id has exactly one spelling: "007", "+7", " 7", "7.0" and
// non-ASCII digits are refused rather than read as 7.
func ParseID(s string) (int64, error) {
	if s == "" || len(s) > 19 || s[0] == '0' {
		return 0, ErrID
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, ErrID
		}
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, ErrID
	}
	return id, nil
}

// UUID is a customer id as stored: 16 raw bytes.
type UUID [16]byte

// ParseUUID accepts the canonical 8-4-4-4-12 hex form, either case.
func ParseUUID(s string) (UUID, error) {
	var u UUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, fmt.Errorf("customer id %q is not a UUID", s)
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, fmt.Errorf("customer id %q is not a UUID", s)
	}
	return u, nil
}

// String renders the canonical lower-case form.
func (u UUID) String() string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
