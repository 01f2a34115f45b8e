// Package claims is the contract between jwt-claims and the checks after it:
// what jwt-claims verified about the caller (Verified), and how it travels
// between plugins, as one value in kong.ctx.shared under SharedKey. Only
// jwt-claims writes it, after verifying the token; later plugins read it
// and never fall back to anything the client sent. subgate hands the same
// value from its jwt section to the others in Go.
package claims

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/subgate/subgate/pkg/upstream"
)

// SharedKey is the kong.ctx.shared key holding the encoded Verified value.
const SharedKey = "subgate.claims"

// version of the encoded value, bumped on an incompatible change.
const version = 1

// Verified is what jwt-claims established about the caller.
type Verified struct {
	V int `json:"v"`
	// CustomerID and Country are mapped from the claims named in jwt-claims'
	// config (defaults "sub" and "country").
	CustomerID string `json:"customer_id"`
	Country    string `json:"country,omitempty"`
	// ExpiresAt is the token's exp (Unix seconds), 0 when it has none.
	ExpiresAt int64 `json:"exp,omitempty"`
	// Claims holds every claim of the verified token, for plugins that are
	// configured to read another claim.
	Claims map[string]any `json:"claims,omitempty"`
}

// ErrAbsent means no verified claims were found: the route does not run
// jwt-claims before the plugin that asked.
var ErrAbsent = errors.New("no verified claims in kong.ctx.shared (is jwt-claims enabled on this route?)")

// Encode serialises v for kong.ctx.shared.
func Encode(v *Verified) (string, error) {
	v.V = version
	b, err := json.Marshal(v)
	return string(b), err
}

// Decode parses a shared value. An empty value is ErrAbsent; anything else
// that is not a current, complete Verified value is an error too, so a later
// plugin never proceeds on half a value.
func Decode(s string) (*Verified, error) {
	if s == "" {
		return nil, ErrAbsent
	}
	var v Verified
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("claims: undecodable shared value: %w", err)
	}
	if v.V != version {
		return nil, fmt.Errorf("claims: shared value has version %d, want %d", v.V, version)
	}
	if v.CustomerID == "" {
		return nil, errors.New("claims: shared value has no customer id")
	}
	return &v, nil
}

// String returns claim name as a header-safe scalar string (see
// upstream.Scalar); other types are not strings.
func (v *Verified) String(name string) (string, bool) { return upstream.Scalar(v.Claims[name]) }
