package denial

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/subgate/subgate/pkg/docblock"
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
// are defined here, and documented there (make readme regenerates it).
func TestReadmeTable(t *testing.T) {
	docblock.Check(t, "../../README.md", "codes", MarkdownTable())
}
