package jwtverify

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"
)

// JWS rules golang-jwt leaves to the application (RFC 7515).

// PaymentType is the typ of subgate's payment-access-tokens (RFC 8725
// 3.11, explicit typing). A verifier that does not expect it refuses it, so
// a payment token never passes as a bearer token and a bearer token never
// as a payment token (3.12, mutually exclusive validation rules).
const PaymentType = "subgate-payment+jwt"

// compact reports whether token is the JWS compact serialization: three
// segments of the base64url alphabet, without padding, whitespace or line
// breaks (RFC 7515 2, 3.1, 7.1). Go's base64 decoder skips \r and \n, so
// the alphabet is checked here, before anything is decoded.
func compact(token string) bool {
	dots := 0
	for i := 0; i < len(token); i++ {
		switch c := token[i]; {
		case c == '.':
			dots++
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return dots == 2
}

// mediaType is a typ or cty value as the media type it names: case-folded,
// with "application/" assumed when it has no "/" (RFC 7515 4.1.9, 4.1.10).
func mediaType(v string) string {
	v = strings.ToLower(v)
	if !strings.Contains(v, "/") {
		v = "application/" + v
	}
	return v
}

// checkJWS refuses a token whose header or payload repeats a member name
// (RFC 7515 4, RFC 7519 4: a parser MUST reject or use the last; rejecting
// means no two readers of one token can disagree on its alg or sub), is not
// UTF-8 (RFC 7515 5.2 step 3, RFC 8725 3.7; Go's JSON decoder would
// silently replace bad bytes), whose header has "crit" (4.1.11: a
// recipient MUST reject extensions it does not understand, and subgate
// understands none), or announces a nested JWT (RFC 7519 5.2, 7.2 step 8:
// its payload is another JWT, which subgate does not unwrap, so it must not
// read that payload as claims). want is the typ the verifier expects.
func checkJWS(raw string, header map[string]any, want string) error {
	if _, ok := header["crit"]; ok {
		return refuse(Malformed, "the token's header names critical extensions, which are not supported")
	}
	if cty, ok := header["cty"]; ok {
		s, isString := cty.(string)
		if !isString {
			return refuse(Malformed, "cty header is not a string")
		}
		if mediaType(s) == "application/jwt" {
			return refuse(Malformed, "nested JWTs are not supported")
		}
	}
	if err := checkType(header, want); err != nil {
		return err
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return refuse(Malformed, "token is not a well-formed JWT")
	}
	for _, seg := range parts[:2] {
		b, err := base64.RawURLEncoding.DecodeString(seg)
		if err != nil || !utf8.Valid(b) {
			return refuse(Malformed, "token is not a well-formed JWT")
		}
		if err := uniqueMembers(b); err != nil {
			return refuse(Malformed, "the token repeats a JSON member name")
		}
	}
	return nil
}

// checkType enforces explicit typing: with want set, the typ header must
// name it; without, a token typed as one of subgate's own kinds is refused.
// Other typ values ("JWT", "at+jwt") are the issuer's business.
func checkType(header map[string]any, want string) error {
	raw, present := header["typ"]
	typ, isString := raw.(string)
	switch {
	case present && !isString:
		return refuse(Malformed, "typ header is not a string")
	case want != "" && mediaType(typ) != mediaType(want):
		return refuse(Malformed, "the token is not of the type this route accepts")
	case want == "" && present && mediaType(typ) == mediaType(PaymentType):
		return refuse(Malformed, "a payment-access-token is not accepted here")
	}
	return nil
}

var (
	errDuplicate = errors.New("duplicate member name")
	errJSON      = errors.New("not one JSON value")
)

// maxJSONDepth is encoding/json's nesting limit: golang-jwt has already
// refused anything deeper.
const maxJSONDepth = 10000

// uniqueMembers fails on a JSON text with an object that repeats a member
// name, at any depth; names are compared decoded ("a" and "\u0061" are one
// name). It scans the bytes itself: encoding/json's token reader cost more
// than half of an uncached HS256 verification. Only names with escapes
// are decoded (by encoding/json); the others are compared in place.
func uniqueMembers(b []byte) error {
	s := jsonScan{b: b}
	if err := s.value(0); err != nil {
		return err
	}
	if s.ws(); s.i != len(s.b) {
		return errJSON
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
	if depth > maxJSONDepth {
		return errJSON
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
				return errJSON
			}
			name, err := s.str()
			if err != nil {
				return err
			}
			for _, n := range names {
				if bytes.Equal(n, name) {
					return errDuplicate
				}
			}
			names = append(names, name)
			if s.next() != ':' {
				return errJSON
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
				return errJSON
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
				return errJSON
			}
		}
	case '"':
		_, err := s.str()
		return err
	case 0:
		return errJSON
	default: // a number, true, false or null: up to the next delimiter
		start := s.i
		for s.i < len(s.b) && !strings.ContainsRune(",]} \t\n\r:{[\"", rune(s.b[s.i])) {
			s.i++
		}
		if s.i == start {
			return errJSON
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
				return nil, errJSON
			}
			return []byte(v), nil
		}
	}
	return nil, errJSON
}
