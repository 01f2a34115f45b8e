// Package denial is subgate's one error contract towards the client: every
// code a plugin can answer with, its HTTP status, and the JSON body and
// headers that carry it. Codes are listed here once; the README mirrors this
// table and a test keeps the two in step.
package denial

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Code is a stable, machine-readable reason a client can branch on.
type Code string

// Spec is what a code means on the wire.
type Spec struct {
	Status int
	// Meaning is the one-line description used in the README table and as the
	// default message.
	Meaning string
}

// The codes. Keep them sorted by plugin, then by status.
const (
	// Any plugin.
	PluginMisconfigured Code = "plugin_misconfigured"
	InternalError       Code = "internal_error"
	TooManyHeaders      Code = "request_headers_too_many"
	// RequestBytesInvalid: a header value or the decoded path is not UTF-8.
	// Kong hands the plugin such bytes as they are and go-pdk's protobuf
	// refuses them, so the plugin cannot read the request: the client's
	// doing, not the gateway's (not a 500).
	RequestBytesInvalid Code = "request_bytes_invalid"
	// ClaimsMissing: a plugin that needs jwt-claims found no verified claims
	// in the shared context. The route is misconfigured; the caller sees 401.
	ClaimsMissing Code = "claims_missing"

	// jwt-claims.
	TokenMissing          Code = "token_missing"
	TokenMalformed        Code = "token_malformed"
	TokenTooLarge         Code = "token_too_large"
	TokenInvalidSignature Code = "token_invalid_signature"
	TokenUnknownKey       Code = "token_unknown_key"
	TokenExpired          Code = "token_expired"
	TokenNotYetValid      Code = "token_not_yet_valid"
	// TokenLifetimeTooLong: exp - iat over max_lifetime_seconds. Not
	// token_expired: a client that fetched a fresh token of the same
	// lifetime would loop.
	TokenLifetimeTooLong Code = "token_lifetime_too_long"
	TokenIssuerInvalid   Code = "token_issuer_invalid"
	TokenAudienceInvalid Code = "token_audience_invalid"
	TokenClaimMissing    Code = "token_claim_missing"
	KeysUnavailable      Code = "keys_unavailable"
	// ConsumerUnknown: the route maps the caller to a Kong consumer and Kong
	// has none (403, or 401 as the route says).
	ConsumerUnknown Code = "consumer_unknown"

	// subscription-owner.
	SubscriptionIDInvalid Code = "subscription_id_invalid"
	SubscriptionForbidden Code = "subscription_forbidden"
	OwnershipUnavailable  Code = "ownership_unavailable"

	// payment-token.
	PaymentTokenMissing          Code = "payment_token_missing"
	PaymentTokenInvalid          Code = "payment_token_invalid"
	PaymentTokenExpired          Code = "payment_token_expired"
	PaymentTokenRevoked          Code = "payment_token_revoked"
	PaymentTokenCustomerMismatch Code = "payment_token_customer_mismatch"
	EntitlementMissing           Code = "entitlement_missing"
	RevocationStateStale         Code = "revocation_state_stale"

	// user-context.
	IdentityUnauthorized Code = "identity_unauthorized"
	IdentityForbidden    Code = "identity_forbidden"
	// IdentityUserMismatch: the identity service names another user than
	// the one jwt-claims verified (match_user).
	IdentityUserMismatch Code = "identity_user_mismatch"
	IdentityRejected     Code = "identity_rejected"
	IdentityError        Code = "identity_error"
	IdentityUnavailable  Code = "identity_unavailable"
	IdentityTimeout      Code = "identity_timeout"
)

// Specs is the single table of codes. Order matters only for documentation.
var Specs = []struct {
	Code Code
	Spec
}{
	{PluginMisconfigured, Spec{500, "the plugin's configuration on this route is invalid; nothing is let through until it is fixed"}},
	{InternalError, Spec{500, "an unexpected failure inside the plugin; the request was denied"}},
	{TooManyHeaders, Spec{431, "more request header lines than Kong lets a plugin read (1000): refused rather than checked in part"}},
	{RequestBytesInvalid, Spec{400, "a request header value or the decoded path is not valid UTF-8, which the plugin cannot read: refused rather than checked in part"}},
	{ClaimsMissing, Spec{401, "no verified claims: the route runs this plugin without jwt-claims before it"}},

	{TokenMissing, Spec{401, "no bearer token in the request"}},
	{TokenMalformed, Spec{401, "the token is not a well-formed JWT"}},
	{TokenTooLarge, Spec{401, "the token is larger than the route allows"}},
	{TokenInvalidSignature, Spec{401, "the signature does not verify, or the algorithm is not the one fixed for the key"}},
	{TokenUnknownKey, Spec{401, "the token names a key (kid) the gateway does not know"}},
	{TokenExpired, Spec{401, "the token has expired: obtain a fresh one"}},
	{TokenNotYetValid, Spec{401, "the token is not valid yet (nbf or iat in the future)"}},
	{TokenLifetimeTooLong, Spec{401, "the token's lifetime (exp - iat) is longer than the route accepts: obtain a shorter-lived one"}},
	{TokenIssuerInvalid, Spec{401, "the token's issuer is not accepted on this route"}},
	{TokenAudienceInvalid, Spec{401, "the token's audience is not accepted on this route"}},
	{TokenClaimMissing, Spec{401, "a claim the route requires is missing or not a string"}},
	{KeysUnavailable, Spec{503, "no usable verification key (JWKS unreachable); the token is not at fault, retry later"}},
	{ConsumerUnknown, Spec{403, "the verified caller is no consumer Kong knows, and the route requires one (401 where the route says consumer_missing: 401)"}},

	{SubscriptionIDInvalid, Spec{400, "the path should carry a subscription id but does not, or it is not a valid id"}},
	{SubscriptionForbidden, Spec{403, "the subscription does not belong to the caller (unknown ids read the same)"}},
	{OwnershipUnavailable, Spec{503, "the ownership store cannot answer; retry later"}},

	{PaymentTokenMissing, Spec{401, "no payment-access-token: fetch one from the payment service"}},
	{PaymentTokenInvalid, Spec{401, "the payment-access-token is malformed or its signature does not verify"}},
	{PaymentTokenExpired, Spec{401, "the payment-access-token has expired: fetch a fresh one and retry"}},
	{PaymentTokenRevoked, Spec{401, "access was revoked (cancellation, refund or block) after the token was issued: fetch a fresh one"}},
	{PaymentTokenCustomerMismatch, Spec{403, "the payment-access-token belongs to another customer"}},
	{EntitlementMissing, Spec{403, "the payment-access-token lacks an entitlement this route requires"}},
	{RevocationStateStale, Spec{503, "the gateway has lost the revocation feed for too long to trust tokens; retry later"}},

	{IdentityUnauthorized, Spec{401, "the identity service did not recognise the caller's credentials"}},
	{IdentityForbidden, Spec{403, "the identity service refused the caller"}},
	{IdentityUserMismatch, Spec{403, "the identity service names another user than the verified token: the request's credentials are not one caller's"}},
	{IdentityRejected, Spec{400, "the identity service rejected the request (its 4xx status is passed on)"}},
	{IdentityError, Spec{502, "the identity service failed or answered something unusable"}},
	{IdentityUnavailable, Spec{503, "the identity service is unavailable and no cached context may be used; retry later"}},
	{IdentityTimeout, Spec{504, "the identity service did not answer in time"}},
}

var byCode = func() map[Code]Spec {
	m := make(map[Code]Spec, len(Specs))
	for _, s := range Specs {
		if _, dup := m[s.Code]; dup {
			panic("denial: duplicate code " + s.Code)
		}
		m[s.Code] = s.Spec
	}
	return m
}()

// Lookup returns the spec of a code and whether it is known.
func Lookup(c Code) (Spec, bool) {
	s, ok := byCode[c]
	return s, ok
}

// Denial is a decision to refuse a request. It is an error so that the
// decision code in pkg/ can return it like any other.
type Denial struct {
	Code    Code
	Status  int
	Message string
	// RetryAfter, in seconds, is sent as Retry-After when positive.
	RetryAfter int
	// Cause is what an operator needs to know (a Redis error, a refused
	// config); never sent to the client, never a token or a secret.
	Cause string
}

func (d *Denial) Error() string { return string(d.Code) + ": " + d.Message }

// New makes a denial with the code's status. An empty message uses the code's
// meaning. An unknown code is a programming error and becomes internal_error,
// so a typo can never turn into a 200.
func New(c Code, message string) *Denial {
	s, ok := byCode[c]
	if !ok {
		return &Denial{Code: InternalError, Status: 500, Message: "unknown denial code " + string(c)}
	}
	if message == "" {
		message = s.Meaning
	}
	return &Denial{Code: c, Status: s.Status, Message: message}
}

// Newf is New with a formatted message.
func Newf(c Code, format string, args ...any) *Denial {
	return New(c, fmt.Sprintf(format, args...))
}

// WithCause records the operator-facing cause.
func (d *Denial) WithCause(cause string) *Denial {
	d.Cause = cause
	return d
}

// WithStatus overrides the status (used where a status is passed through, as
// for an identity service's 4xx). Statuses outside 400..599 are ignored.
func (d *Denial) WithStatus(status int) *Denial {
	if status >= 400 && status <= 599 {
		d.Status = status
	}
	return d
}

// WithRetryAfter sets the Retry-After seconds.
func (d *Denial) WithRetryAfter(seconds int) *Denial {
	d.RetryAfter = seconds
	return d
}

type body struct {
	Code      Code   `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// Body is the JSON the client receives.
func (d *Denial) Body(requestID string) []byte {
	b, err := json.Marshal(body{Code: d.Code, Message: d.Message, RequestID: requestID})
	if err != nil { // cannot happen for strings; keep the contract anyway
		return []byte(`{"code":"internal_error","message":"","request_id":""}`)
	}
	return b
}

// Headers are the response headers of a denial: JSON content type, no
// caching, RFC 6750 WWW-Authenticate on 401 and Retry-After where set.
func (d *Denial) Headers() map[string][]string {
	h := map[string][]string{
		"Content-Type":  {"application/json; charset=utf-8"},
		"Cache-Control": {"no-store"},
	}
	if d.Status == http.StatusUnauthorized {
		h["WWW-Authenticate"] = []string{d.challenge()}
	}
	if d.RetryAfter > 0 {
		h["Retry-After"] = []string{strconv.Itoa(d.RetryAfter)}
	}
	return h
}

// Realm is the realm of subgate's Bearer challenges.
const Realm = "subgate"

// challenge is the WWW-Authenticate value of a 401 (RFC 7235 3.1 requires
// one). A request that carried no bearer token learns only the scheme and
// realm (RFC 6750 3.1: no error information then; 3: Bearer needs at least
// one auth-param); every other 401 says invalid_token and why.
func (d *Denial) challenge() string {
	if d.Code == TokenMissing {
		return `Bearer realm="` + Realm + `"`
	}
	return `Bearer error="invalid_token", error_description="` + quoteSafe(d.Message) + `"`
}

// quoteSafe keeps an error_description inside its quoted-string: RFC 6750
// allows %x20-21 / %x23-5B / %x5D-7E only.
func quoteSafe(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 0x20 && r <= 0x7e && r != '"' && r != '\\' {
			b.WriteRune(r)
		} else {
			b.WriteByte('\'')
		}
	}
	return b.String()
}

// MarkdownTable renders Specs for the README.
func MarkdownTable() string { return table(func(Code) bool { return true }) }

// TableOf renders only the given codes (a plugin's README), in Specs' order.
func TableOf(codes ...Code) string {
	return table(func(c Code) bool { return slices.Contains(codes, c) })
}

func table(include func(Code) bool) string {
	var b strings.Builder
	b.WriteString("| code | status | meaning |\n| --- | --- | --- |\n")
	for _, s := range Specs {
		if include(s.Code) {
			fmt.Fprintf(&b, "| `%s` | %d | %s |\n", s.Code, s.Status, s.Meaning)
		}
	}
	return b.String()
}
