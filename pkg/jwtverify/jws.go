package jwtverify

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
)

// JWS rules golang-jwt leaves to the application (RFC 7515).

// checkJWS refuses a token whose header or payload repeats a member name
// (RFC 7515 4, RFC 7519 4: a parser MUST reject or use the last; rejecting
// means no two readers of one token can disagree on its alg or sub), or
// whose header has "crit" (4.1.11: a recipient MUST reject extensions it
// does not understand, and subgate understands none).
func checkJWS(raw string, header map[string]any) error {
	if _, ok := header["crit"]; ok {
		return refuse(Malformed, "the token's header names critical extensions, which are not supported")
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return refuse(Malformed, "token is not a well-formed JWT")
	}
	for _, seg := range parts[:2] {
		b, err := base64.RawURLEncoding.DecodeString(seg)
		if err != nil {
			return refuse(Malformed, "token is not a well-formed JWT")
		}
		if err := uniqueMembers(json.NewDecoder(bytes.NewReader(b))); err != nil {
			return refuse(Malformed, "the token repeats a JSON member name")
		}
	}
	return nil
}

var errDuplicate = errors.New("duplicate member name")

// uniqueMembers walks one JSON value and fails on an object that repeats a
// member name, at any depth.
func uniqueMembers(d *json.Decoder) error {
	t, err := d.Token()
	if err != nil {
		return err
	}
	delim, ok := t.(json.Delim)
	if !ok {
		return nil
	}
	switch delim {
	case '{':
		seen := map[string]bool{}
		for d.More() {
			k, err := d.Token()
			if err != nil {
				return err
			}
			name, _ := k.(string)
			if seen[name] {
				return errDuplicate
			}
			seen[name] = true
			if err := uniqueMembers(d); err != nil {
				return err
			}
		}
	case '[':
		for d.More() {
			if err := uniqueMembers(d); err != nil {
				return err
			}
		}
	}
	_, err = d.Token() // the closing delimiter
	return err
}
