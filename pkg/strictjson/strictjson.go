// Package strictjson holds the JSON rules both of subgate's readers of
// foreign JSON apply, refusing a text that readers disagree on, so that the
// gateway never decides on one value while the upstream reads another:
// a member name twice (RFC 8259 4: "the behavior of software that receives
// such an object is unpredictable"; encoding/json keeps the last copy, many
// parsers the first), and a \u escape of a lone UTF-16 surrogate (RFC 8259
// 8.2: encoding/json reads U+FFFD, JavaScript and Python the surrogate).
// pkg/jwtverify refuses such a token header or payload; pkg/usercontext such
// an identity answer.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
)

// The errors of Unambiguous.
var (
	ErrDuplicate = errors.New("duplicate member name")
	ErrSurrogate = errors.New("escaped lone UTF-16 surrogate")
	ErrSyntax    = errors.New("not one JSON value")
)

// maxDepth is encoding/json's nesting limit: a text deeper than that is
// refused by the decoder every caller also runs.
const maxDepth = 10000

// Unambiguous fails on a JSON text with an object that repeats a member
// name at any depth (ErrDuplicate; names are compared decoded: "a" and
// "\u0061" are one name), or with a string, name or value, that escapes a
// lone surrogate (ErrSurrogate). It scans the bytes itself: encoding/json's
// token reader cost more than half of an uncached HS256 verification. Only
// strings with escapes are decoded (by encoding/json); the others are
// compared in place. It is not a validator (a malformed number passes):
// callers decode the text with encoding/json as well.
func Unambiguous(b []byte) error {
	s := jsonScan{b: b}
	if err := s.value(0); err != nil {
		return err
	}
	if s.ws(); s.i != len(s.b) {
		return ErrSyntax
	}
	return nil
}

type jsonScan struct {
	b []byte
	i int
}

func (s *jsonScan) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// next skips white space and reports the next byte (0 at the end).
func (s *jsonScan) next() byte {
	if s.ws(); s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *jsonScan) value(depth int) error {
	if depth > maxDepth {
		return ErrSyntax
	}
	switch s.next() {
	case '{':
		s.i++
		var names [][]byte
		if s.next() == '}' {
			s.i++
			return nil
		}
		for {
			if s.next() != '"' {
				return ErrSyntax
			}
			name, err := s.str()
			if err != nil {
				return err
			}
			for _, n := range names {
				if bytes.Equal(n, name) {
					return ErrDuplicate
				}
			}
			names = append(names, name)
			if s.next() != ':' {
				return ErrSyntax
			}
			s.i++
			if err := s.value(depth + 1); err != nil {
				return err
			}
			switch s.next() {
			case ',':
				s.i++
			case '}':
				s.i++
				return nil
			default:
				return ErrSyntax
			}
		}
	case '[':
		s.i++
		if s.next() == ']' {
			s.i++
			return nil
		}
		for {
			if err := s.value(depth + 1); err != nil {
				return err
			}
			switch s.next() {
			case ',':
				s.i++
			case ']':
				s.i++
				return nil
			default:
				return ErrSyntax
			}
		}
	case '"':
		_, err := s.str()
		return err
	case 0:
		return ErrSyntax
	default: // a number, true, false or null: up to the next delimiter
		start := s.i
		for s.i < len(s.b) && !strings.ContainsRune(",]} \t\n\r:{[\"", rune(s.b[s.i])) {
			s.i++
		}
		if s.i == start {
			return ErrSyntax
		}
		return nil
	}
}

// str reads the string at s.i (an opening quote) and returns its decoded
// bytes: the raw bytes when it holds no escape.
func (s *jsonScan) str() ([]byte, error) {
	start, escaped := s.i, false
	for s.i++; s.i < len(s.b); s.i++ {
		switch s.b[s.i] {
		case '\\':
			escaped = true
			s.i++ // the escaped byte (a \u's hex digits are plain bytes)
		case '"':
			s.i++
			raw := s.b[start:s.i]
			if !escaped {
				return raw[1 : len(raw)-1], nil
			}
			if loneSurrogate(raw) {
				return nil, ErrSurrogate
			}
			var v string
			if err := json.Unmarshal(raw, &v); err != nil {
				return nil, ErrSyntax
			}
			return []byte(v), nil
		}
	}
	return nil, ErrSyntax
}

// loneSurrogate reports whether a quoted string escapes a UTF-16 surrogate
// that is not a high one directly followed by an escaped low one.
func loneSurrogate(raw []byte) bool {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		r := escapedUnit(raw, i)
		switch {
		case r < 0: // another escape: skip its letter
			i++
		case !utf16.IsSurrogate(r):
			i += 5
		case utf16.DecodeRune(r, escapedUnit(raw, i+6)) == unicode.ReplacementChar:
			return true // a low one first, or a high one without its low one
		default:
			i += 11
		}
	}
	return false
}

// escapedUnit is the code unit of the \uXXXX escape at raw[i], or -1.
func escapedUnit(raw []byte, i int) rune {
	if i+5 >= len(raw) || raw[i] != '\\' || raw[i+1] != 'u' {
		return -1
	}
	v, err := strconv.ParseUint(string(raw[i+2:i+6]), 16, 16)
	if err != nil {
		return -1 // malformed: the caller's decoder refuses it
	}
	return rune(v)
}

// Member returns the raw value of the top-level member name of an object
// (names compared decoded), false when b is no object or lacks it. b is a
// text Unambiguous and a validator (json.Valid, json.Compact) accepted:
// Member reads, it does not check.
func Member(b []byte, name string) ([]byte, bool) {
	s := jsonScan{b: b}
	if s.next() != '{' {
		return nil, false
	}
	s.i++
	for s.next() == '"' {
		n, err := s.str()
		if err != nil || s.next() != ':' {
			return nil, false
		}
		s.i++
		s.ws()
		start := s.i
		if s.value(1) != nil {
			return nil, false
		}
		if string(n) == name {
			return b[start:s.i], true
		}
		if s.next() == ',' {
			s.i++
		}
	}
	return nil, false
}
