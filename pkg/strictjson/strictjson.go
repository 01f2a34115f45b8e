// Package strictjson holds the JSON rule both of subgate's readers of
// foreign JSON apply: a text that repeats a member name is refused, because
// readers disagree on which copy wins (RFC 8259 4: "the behavior of software
// that receives such an object is unpredictable"; encoding/json keeps the
// last, many parsers the first). The gateway would decide on one value while
// the upstream reads the other. pkg/jwtverify refuses such a token header
// or payload; pkg/usercontext such an identity answer.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
)

// The errors of UniqueMembers.
var (
	ErrDuplicate = errors.New("duplicate member name")
	ErrSyntax    = errors.New("not one JSON value")
)

// maxDepth is encoding/json's nesting limit: a text deeper than that is
// refused by the decoder every caller also runs.
const maxDepth = 10000

// UniqueMembers fails (ErrDuplicate) on a JSON text with an object that
// repeats a member name, at any depth; names are compared decoded ("a" and
// "\u0061" are one name). It scans the bytes itself: encoding/json's token
// reader cost more than half of an uncached HS256 verification. Only names
// with escapes are decoded (by encoding/json); the others are compared in
// place. It is not a validator (a malformed number passes): callers decode
// the text with encoding/json as well.
func UniqueMembers(b []byte) error {
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
			var v string
			if err := json.Unmarshal(raw, &v); err != nil {
				return nil, ErrSyntax
			}
			return []byte(v), nil
		}
	}
	return nil, ErrSyntax
}
