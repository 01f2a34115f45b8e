// Package docblock keeps a generated block of a Markdown file equal to what
// the code says, for the tests that own the README tables: the block
// between "<!-- name:begin -->" and "<!-- name:end -->" must be want, or
// the test fails; with SUBGATE_UPDATE_README=1 (make readme) it is
// rewritten instead.
package docblock

import (
	"os"
	"strings"
	"testing"
)

// UpdateEnv is the variable that makes Check rewrite instead of fail.
const UpdateEnv = "SUBGATE_UPDATE_README"

// Check compares, or rewrites, the named block of the file at path.
func Check(t testing.TB, path, name, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	begin, end := "<!-- "+name+":begin -->\n", "<!-- "+name+":end -->"
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("%s has no %s ... %s block", path, strings.TrimSpace(begin), end)
	}
	if doc[i+len(begin):j] == want {
		return
	}
	if os.Getenv(UpdateEnv) != "1" {
		t.Errorf("%s: the %s block is not what the code says; run make readme\nwant:\n%s", path, name, want)
		return
	}
	doc = doc[:i+len(begin)] + want + doc[j:]
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
}
