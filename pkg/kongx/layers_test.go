package kongx_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/subgate/subgate/pkg/"

// imports lists the subgate pkg/ packages the non-test files of dir import.
func imports(t *testing.T, dir string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		parsed, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range parsed.Imports {
			if p := strings.Trim(imp.Path.Value, `"`); strings.HasPrefix(p, module) {
				out[strings.TrimPrefix(p, module)] = true
			}
		}
	}
	return out
}

// The layers point one way. kongx, the adapter every plugin links, knows
// the check contract and what lies beneath it, never a check: or every
// plugin binary would carry, and export the metrics of, all of them. And no
// package of pkg/ imports kongx: no decision knows Kong.
func TestLayers(t *testing.T) {
	beneath := map[string]bool{"check": true, "claims": true, "config": true, "denial": true, "health": true, "metrics": true}
	for p := range imports(t, ".") {
		if !beneath[p] {
			t.Errorf("kongx imports pkg/%s", p)
		}
	}
	dirs, err := os.ReadDir("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if !d.IsDir() || d.Name() == "kongx" {
			continue
		}
		for p := range imports(t, filepath.Join("..", d.Name())) {
			if p == "kongx" || strings.HasPrefix(p, "kongx/") {
				t.Errorf("pkg/%s imports pkg/%s", d.Name(), p)
			}
		}
	}
}
