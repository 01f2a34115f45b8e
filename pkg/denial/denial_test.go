package denial

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

func TestUnknownCodeNeverAllows(t *testing.T) {
	d := New("no_such_code", "x")
	if d.Status != 500 || d.Code != InternalError {
		t.Fatalf("unknown code became %+v", d)
	}
}

func TestBodyAndHeaders(t *testing.T) {
	d := New(TokenExpired, `bad "quote" and ünïcode`)
	var b map[string]string
	if err := json.Unmarshal(d.Body("rid"), &b); err != nil {
		t.Fatal(err)
	}
	if b["code"] != "token_expired" || b["request_id"] != "rid" || len(b) != 3 {
		t.Fatalf("body %v", b)
	}
	h := d.Headers()
	www := h["WWW-Authenticate"][0]
	if !strings.HasPrefix(www, `Bearer error="invalid_token", error_description="`) || strings.Count(www, `"`) != 4 {
		t.Fatalf("WWW-Authenticate not a safe quoted-string: %s", www)
	}
	if New(SubscriptionForbidden, "").Headers()["WWW-Authenticate"] != nil {
		t.Fatal("WWW-Authenticate on a 403")
	}
	if d := New(IdentityRejected, "").WithStatus(429); d.Status != 429 {
		t.Fatal("WithStatus ignored")
	}
	if d := New(IdentityRejected, "").WithStatus(200); d.Status != 400 {
		t.Fatal("WithStatus let a success status through")
	}
}

// TestReadmeTable keeps the README's code table equal to Specs: the codes
// are defined here, and documented there. Regenerate with
// `UPDATE_README=1 go test ./pkg/denial`.
func TestReadmeTable(t *testing.T) {
	const path = "../../README.md"
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	begin, end := "<!-- codes:begin -->\n", "<!-- codes:end -->"
	i, j := strings.Index(string(readme), begin), strings.Index(string(readme), end)
	if i < 0 || j < i {
		t.Fatal("README lacks the codes markers")
	}
	want := MarkdownTable()
	got := string(readme[i+len(begin) : j])
	if got == want {
		return
	}
	if os.Getenv("UPDATE_README") == "1" {
		out := string(readme[:i+len(begin)]) + want + string(readme[j:])
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("README code table is out of date; run UPDATE_README=1 go test ./pkg/denial\nwant:\n%s", want)
}
