package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/subgate/subgate/spec/stack"
)

// step is one command of the walkthrough: printed for the user to paste,
// and run by -selftest (and the test) to prove it answers as promised.
type step struct {
	title   string
	method  string
	path    string
	headers [][2]string // name, value; values may name $ALICE / $BOB
	body    string
	base    string // "gateway" (default), "admin", "identity" or "payment"
	status  int
	// settle: the answer depends on an event propagating; the self-test
	// retries it for up to two seconds (propagation takes well under 1 ms).
	settle bool
	code   string // expected error code, "" for a success
	// contains: texts the answer's body must hold.
	contains []string
}

func walkthrough() []step {
	return []step{
		{title: "A public route: no plugin runs", path: "/public/hello", status: 200},
		{title: "Who am I: jwt-claims verifies the JWT and sends the verified identity upstream",
			path: "/me", headers: [][2]string{{"Authorization", "Bearer $ALICE"}}, status: 200},
		{title: "Alice's user context from the identity service (cached for a later outage)",
			path: "/account", headers: [][2]string{{"Authorization", "Bearer $ALICE"}}, status: 200},
		{title: "A spoofed identity header is replaced by the verified one (see X-Customer-Id in the echo)",
			path: "/me", headers: [][2]string{{"Authorization", "Bearer $ALICE"}, {"X-Customer-Id", stack.Bob}}, status: 200},
		{title: "No token", path: "/me", status: 401, code: "token_missing"},
		{title: "Alice's own subscription: allowed", path: "/subscriptions/1234/deliveries",
			headers: [][2]string{{"Authorization", "Bearer $ALICE"}}, status: 200},
		{title: "Bob's subscription, asked for by Alice: forbidden", path: "/subscriptions/5678/deliveries",
			headers: [][2]string{{"Authorization", "Bearer $ALICE"}}, status: 403, code: "subscription_forbidden"},
		{title: "A subscription that does not exist reads the same", path: "/subscriptions/999/deliveries",
			headers: [][2]string{{"Authorization", "Bearer $ALICE"}}, status: 403, code: "subscription_forbidden"},
		{title: "Path tricks do not reach Bob's subscription", path: "/subscriptions/1234/../5678",
			headers: [][2]string{{"Authorization", "Bearer $ALICE"}}, status: 403, code: "subscription_forbidden"},
		{title: "A non-canonical id is refused", path: "/subscriptions/01234",
			headers: [][2]string{{"Authorization", "Bearer $ALICE"}}, status: 400, code: "subscription_id_invalid"},
		{title: "Paid content with Alice's payment-access-token: allowed", path: "/training/plan",
			headers: [][2]string{{"Authorization", "Bearer $ALICE"}, {"X-Payment-Token", "$PAY"}}, status: 200},
		{title: "Paid content without a payment-access-token", path: "/training/plan",
			headers: [][2]string{{"Authorization", "Bearer $ALICE"}}, status: 401, code: "payment_token_missing"},
		{title: "An expired payment-access-token: the client fetches a fresh one", path: "/training/plan",
			headers: [][2]string{{"Authorization", "Bearer $ALICE"}, {"X-Payment-Token", "$PAY_EXPIRED"}}, status: 401, code: "payment_token_expired"},
		{title: "Bob's payment-access-token presented with Alice's JWT", path: "/training/plan",
			headers: [][2]string{{"Authorization", "Bearer $ALICE"}, {"X-Payment-Token", "$PAY_BOB"}}, status: 403, code: "payment_token_customer_mismatch"},
		{title: "All four plugins: Alice's subscription, payment token and user context", path: "/coach/subscriptions/1234",
			headers: [][2]string{{"Authorization", "Bearer $ALICE"}, {"X-Payment-Token", "$PAY"}}, status: 200},
		{title: "The same four checks in one Kong event: the subgate plugin", path: "/sg/coach/subscriptions/1234",
			headers: [][2]string{{"Authorization", "Bearer $ALICE"}, {"X-Payment-Token", "$PAY"}}, status: 200},
		{title: "The identity service goes down (503 on every lookup)", base: "identity", method: "POST", path: "/admin/mode",
			body: `{"mode":"503"}`, status: 200},
		{title: "Alice is served from the fallback cache (see X-User-Context-Source: cache in the echo)", path: "/account",
			headers: [][2]string{{"Authorization", "Bearer $ALICE"}}, status: 200},
		{title: "Bob, never seen before, cannot be served", path: "/account",
			headers: [][2]string{{"Authorization", "Bearer $BOB"}}, status: 503, code: "identity_unavailable"},
		{title: "The identity service recovers", base: "identity", method: "POST", path: "/admin/mode",
			body: `{"mode":"ok"}`, status: 200},
		{title: "The payment service publishes Alice's cancellation", base: "payment", method: "POST", path: "/events",
			body: `{"type":"cancellation","customer_id":"` + stack.Alice + `"}`, status: 200},
		{title: "...and her live payment-access-token is revoked at once", path: "/training/plan", settle: true,
			headers: [][2]string{{"Authorization", "Bearer $ALICE"}, {"X-Payment-Token", "$PAY"}}, status: 401, code: "payment_token_revoked"},
		{title: "The schema Kong enforces for jwt-claims (defaults, bounds, referenceable secrets)", base: "admin",
			path: "/schemas/plugins/jwt-claims", status: 200, contains: []string{`"leeway_seconds":{`, `"between":[0,600]`, `"referenceable":true`}},
		{title: "A config with a typo is refused, naming the field; the running config stays", base: "admin", method: "POST",
			path: "/config", body: badConfig, status: 400, contains: []string{"leway_seconds", "unknown field"}},
	}
}

// badConfig is a declarative config a Kong operator might send with a typo.
const badConfig = `{"_format_version":"3.0","services":[{"name":"echo","url":"http://echo:8080","routes":[{"name":"profile",` +
	`"paths":["/me"],"plugins":[{"name":"jwt-claims","config":{"jwks_url":"http://identity:8080/.well-known/jwks.json","leway_seconds":30}}]}]}]}`

func (s step) url(st *stack.Stack) string {
	switch s.base {
	case "admin":
		return st.AdminURL + s.path
	case "identity":
		return st.IdentityURL + s.path
	case "payment":
		return st.PaymentURL + s.path
	}
	return st.GatewayURL + s.path
}

// curl renders the step as a command to paste.
func (s step) curl(st *stack.Stack) string {
	var b strings.Builder
	b.WriteString("curl -si")
	if s.method != "" && s.method != "GET" {
		b.WriteString(" -X " + s.method)
	}
	if strings.Contains(s.path, "..") || strings.Contains(s.path, "//") {
		b.WriteString(" --path-as-is")
	}
	for _, h := range s.headers {
		fmt.Fprintf(&b, ` -H "%s: %s"`, h[0], h[1])
	}
	if s.body != "" {
		fmt.Fprintf(&b, ` -H "Content-Type: application/json" -d '%s'`, s.body)
	}
	fmt.Fprintf(&b, " '%s'", s.url(st))
	return b.String()
}

// run performs the step and reports how the answer differs from the promise.
func (s step) run(st *stack.Stack, tokens map[string]string) error {
	err := s.once(st, tokens)
	for deadline := time.Now().Add(2 * time.Second); err != nil && s.settle && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		err = s.once(st, tokens)
	}
	return err
}

func (s step) once(st *stack.Stack, tokens map[string]string) error {
	method := s.method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequest(method, s.url(st), strings.NewReader(s.body))
	if err != nil {
		return err
	}
	req.URL.Opaque = s.path // as curl --path-as-is sends it
	for _, h := range s.headers {
		req.Header.Set(h[0], expand(h[1], tokens))
	}
	if s.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(raw, &body)
	missing := ""
	for _, c := range s.contains {
		if !strings.Contains(string(raw), c) {
			missing = c
		}
	}
	if resp.StatusCode != s.status || body.Code != s.code || missing != "" {
		return fmt.Errorf("%q: got %d %s, promised %d %s %q", s.title, resp.StatusCode, raw, s.status, s.code, s.contains)
	}
	return nil
}

// expand replaces $NAME with the token, longest names first ($PAY_BOB before $PAY).
func expand(v string, tokens map[string]string) string {
	names := make([]string, 0, len(tokens))
	for n := range tokens {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return len(names[i]) > len(names[j]) })
	for _, n := range names {
		v = strings.ReplaceAll(v, "$"+n, tokens[n])
	}
	return v
}
