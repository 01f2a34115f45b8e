package usercontext

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/subgate/subgate/pkg/strictjson"
)

// FuzzParse feeds arbitrary identity responses to the validator: no input
// may panic, and an accepted context is one JSON object within the bound,
// valid UTF-8, without a member name twice, with a non-empty string user
// id, kept in compact form within the upstream header's bound.
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
	f.Add("application/json", []byte(`{"user_id":"bob","roles":["a"],"user_id":"alice"}`))
	f.Add("application/json", []byte(`{"user_id":"u1","o":{"k":1,"\u006b":2}}`))
	f.Add("application/json", []byte(`{"user_id":"u1","a":[{"k":1},{"k":1,"k":2}]}`))
	f.Add("application/json", []byte("{\"user_id\":\"caf\xff\"}"))
	f.Add("application/json", []byte("{\"user_id\":\"u1\",\"n\xc3\":1}"))
	f.Add("application/json", []byte("{\"user_id\":\"u1\",\"s\":\"\xed\xa0\x80\"}"))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		got, err := c.parse(contentType, body)
		if err != nil {
			return
		}
		if len(body) > c.o.MaxBodyBytes || got.UserID == "" || !json.Valid(got.Raw) || !c.fits(got.Raw) {
			t.Fatalf("accepted %q (%s) as %+v", body, contentType, got)
		}
		if !utf8.Valid(body) || strictjson.Unambiguous(body) != nil {
			t.Fatalf("accepted %q: not UTF-8, a member name twice or an escaped lone surrogate", body)
		}
		var fields map[string]any
		if json.Unmarshal(got.Raw, &fields) != nil || fields[c.o.UserIDField] != got.UserID {
			t.Fatalf("the kept context %s does not hold user id %q", got.Raw, got.UserID)
		}
	})
}
