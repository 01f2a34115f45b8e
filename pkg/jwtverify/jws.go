package jwtverify

import (
	"encoding/base64"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/subgate/subgate/pkg/strictjson"
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
// means no two readers of one token can disagree on its alg or sub) or
// escapes a lone surrogate (Go reads U+FFFD, other readers the escape), is not
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
		switch err := strictjson.Unambiguous(b); {
		case errors.Is(err, strictjson.ErrSurrogate):
			return refuse(Malformed, "the token escapes a lone UTF-16 surrogate")
		case err != nil:
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
