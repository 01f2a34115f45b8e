package spec

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/subgate/subgate/pkg/chain"
	"github.com/subgate/subgate/pkg/check"
	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/docblock"
	"github.com/subgate/subgate/pkg/jwtclaims"
	"github.com/subgate/subgate/pkg/jwtverify"
	"github.com/subgate/subgate/pkg/ownership"
	"github.com/subgate/subgate/pkg/paytoken"
	"github.com/subgate/subgate/pkg/usercontext"
)

// reference is what a plugin's README documents from the code: its
// declared config (as its main.go hands it to kongx.NewPlugin) and its
// decider, whose package and Reads say which codes it can answer.
type reference struct {
	decl    any
	decider func(t *testing.T) check.Decider
}

// constant returns a decider whose Reads does not depend on its config.
func constant[D check.Decider](d D) func(*testing.T) check.Decider {
	return func(*testing.T) check.Decider { return d }
}

var references = map[string]reference{
	"jwt-claims": {jwtclaims.Config{}, func(t *testing.T) check.Decider {
		var c jwtclaims.Config // its Reads follow run_on_preflight: the defaults'
		config.Defaults(&c)
		c.Keys = []jwtverify.Key{{Kid: "k", Algorithm: "HS256", Secret: strings.Repeat("s", 32)}}
		d, err := jwtclaims.New(c)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}},
	"subscription-owner": {ownership.Config{}, constant((*ownership.Decider)(nil))},
	"payment-token":      {paytoken.Config{}, constant((*paytoken.Decider)(nil))},
	"user-context": {usercontext.Config{}, func(t *testing.T) check.Decider {
		var c usercontext.Config // its Reads follow match_user: the defaults'
		config.Defaults(&c)
		c.IdentityURL = "http://identity.invalid/context"
		d, err := usercontext.New(c)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}},
	"subgate": {chain.Config{}, func(t *testing.T) check.Decider {
		var c chain.Config
		config.Defaults(&c)
		c.JWT.Keys = []jwtverify.Key{{Kid: "k", Algorithm: "HS256", Secret: strings.Repeat("s", 32)}}
		d, err := chain.New(c)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}},
}

// Each plugin's README carries its config table, generated from the
// declaration, and the codes it can answer, found in its decision's code:
// this test fails when they drift, and SUBGATE_UPDATE_README=1 (make
// readme) rewrites them. (Its PDK calls are counted by the plugin's own
// tests.)
func TestREADMEConfigTablesAreGenerated(t *testing.T) {
	for name, ref := range references {
		path := filepath.Join("..", "plugins", name, "README.md")
		docblock.Check(t, path, "config", config.Table(ref.decl))
		d := ref.decider(t)
		codes := codesIn(t, reflect.TypeOf(d).Elem().PkgPath())
		docblock.Check(t, path, "codes", denial.TableOf(append(adapterCodes(t, d.Reads()), codes...)...))
	}
}

// adapterCodes are the codes pkg/kongx answers itself for a decider that
// reads reads: a refused config and an internal failure anywhere, a request
// with too many header lines where headers are read, bytes that are not
// UTF-8 where headers or the path are, missing claims where
// claims are (or unusable ones where they are optional).
func adapterCodes(t *testing.T, reads check.Reads) []denial.Code {
	rules := map[denial.Code]bool{
		denial.PluginMisconfigured: true,
		denial.InternalError:       true,
		denial.TooManyHeaders:      reads&check.Headers != 0,
		denial.RequestBytesInvalid: reads&(check.Headers|check.Path) != 0,
		denial.ClaimsMissing:       reads&(check.Claims|check.OptionalClaims) != 0,
	}
	var out []denial.Code
	for _, c := range codesOf(t, "github.com/subgate/subgate/pkg/kongx") {
		when, known := rules[c]
		if !known {
			t.Fatalf("pkg/kongx answers %s: say in adapterCodes when", c)
		}
		if when {
			out = append(out, c)
		}
	}
	return out
}

// codesIn lists the denial codes named in the non-test code of pkg and of
// the subgate packages it imports, transitively.
func codesIn(t *testing.T, pkg string) []denial.Code {
	seen := map[string]bool{}
	var codes []denial.Code
	var visit func(string)
	visit = func(p string) {
		if seen[p] {
			return
		}
		seen[p] = true
		codes = append(codes, codesOf(t, p)...)
		for _, imp := range parse(t, p) {
			for _, i := range imp.Imports {
				if q, _ := strconv.Unquote(i.Path.Value); strings.HasPrefix(q, module+"/pkg/") {
					visit(q)
				}
			}
		}
	}
	visit(pkg)
	return codes
}

const module = "github.com/subgate/subgate"

// codesOf lists the codes named as denial.<Const> in pkg's non-test files.
func codesOf(t *testing.T, pkg string) []denial.Code {
	names := constNames(t)
	var out []denial.Code
	for _, f := range parse(t, pkg) {
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == "denial" {
					if c, ok := names[sel.Sel.Name]; ok && !slices.Contains(out, c) {
						out = append(out, c)
					}
				}
			}
			return true
		})
	}
	return out
}

// constNames maps pkg/denial's constant names to their codes.
func constNames(t *testing.T) map[string]denial.Code {
	out := map[string]denial.Code{}
	for _, f := range parse(t, module+"/pkg/denial") {
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, s := range g.Specs {
				v := s.(*ast.ValueSpec)
				for i, n := range v.Names {
					if i < len(v.Values) {
						if lit, ok := v.Values[i].(*ast.BasicLit); ok {
							code, _ := strconv.Unquote(lit.Value)
							out[n.Name] = denial.Code(code)
						}
					}
				}
			}
		}
	}
	return out
}

func parse(t *testing.T, pkg string) []*ast.File {
	t.Helper()
	dir := filepath.Join("..", strings.TrimPrefix(pkg, module+"/"))
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var out []*ast.File
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}
