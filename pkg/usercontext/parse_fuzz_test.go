package usercontext

import (
	"encoding/json"
	"testing"
)

// FuzzParse feeds arbitrary identity responses to the validator: no input
// may panic, and an accepted context is one JSON object within the bound,
// with a non-empty string user id, kept in compact form.
func FuzzParse(f *testing.F) {
	c, err := NewClient(Config{IdentityURL: "http://identity.invalid/ctx", MaxBodyBytes: 4096})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("application/json", []byte(`{"user_id":"u1","roles":["a"]}`))
	f.Add("application/problem+json", []byte(`{"user_id":"u1"} {"user_id":"u2"}`))
	f.Add("text/html", []byte(`{"user_id":"u1"}`))
	f.Add("application/json; charset=utf-8", []byte(`{"user_id":7}`))
	f.Add("application/json", []byte(`[{"user_id":"u1"}]`))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		got, err := c.parse(contentType, body)
		if err != nil {
			return
		}
		if len(body) > c.o.MaxBodyBytes || got.UserID == "" || !json.Valid(got.Raw) {
			t.Fatalf("accepted %q (%s) as %+v", body, contentType, got)
		}
		var fields map[string]any
		if json.Unmarshal(got.Raw, &fields) != nil || fields[c.o.UserIDField] != got.UserID {
			t.Fatalf("the kept context %s does not hold user id %q", got.Raw, got.UserID)
		}
	})
}
