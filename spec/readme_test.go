package spec

import (
	"os"
	"strings"
	"testing"

	"github.com/subgate/subgate/pkg/chain"
	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/jwtclaims"
	"github.com/subgate/subgate/pkg/ownership"
	"github.com/subgate/subgate/pkg/paytoken"
	"github.com/subgate/subgate/pkg/usercontext"
)

// declarations are the plugins' config declarations, as their main.go
// passes them to kongx.Serve.
var declarations = map[string]any{
	"jwt-claims":         jwtclaims.Config{},
	"subscription-owner": ownership.Config{},
	"payment-token":      paytoken.Config{},
	"user-context":       usercontext.Config{},
	"subgate":            chain.Config{},
}

// The README's config tables are generated from the declarations: this
// test fails when they drift, and SUBGATE_UPDATE_README=1 (make readme)
// rewrites them.
func TestREADMEConfigTablesAreGenerated(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for name, decl := range declarations {
		begin, end := "<!-- config:"+name+":begin -->\n", "<!-- config:"+name+":end -->"
		i, j := strings.Index(readme, begin), strings.Index(readme, end)
		if i < 0 || j < i {
			t.Fatalf("README.md has no %s ... %s block", strings.TrimSpace(begin), end)
		}
		want := config.Table(decl)
		if got := readme[i+len(begin) : j]; got != want {
			if os.Getenv("SUBGATE_UPDATE_README") == "1" {
				readme = readme[:i+len(begin)] + want + readme[j:]
				continue
			}
			t.Errorf("README.md's %s config table is not the declaration's; run make readme", name)
		}
	}
	if os.Getenv("SUBGATE_UPDATE_README") == "1" {
		if err := os.WriteFile("../README.md", []byte(readme), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
