package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/subgate/subgate/pkg/kongschema"
)

// binDir is where `make build` put the plugin binaries: the validator
// reads their schemas with -dump. `make test` sets SUBGATE_BIN.
func binDir(t *testing.T) string {
	dir := os.Getenv("SUBGATE_BIN")
	if dir == "" {
		t.Skip("SUBGATE_BIN is not set (make test sets it after make build)")
	}
	return dir
}

func TestGoodConfigPasses(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(binDir(t), []string{"../../kong/kong.yml"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut.String())
	}
	if !strings.HasPrefix(out.String(), "ok: ../../kong/kong.yml (") {
		t.Errorf("output %q", out.String())
	}
}

var errLine = regexp.MustCompile(`^testdata/bad/[a-z0-9-]+\.yml:\d+: `)

// TestBadFixturesFail runs the validator on each testdata/bad fixture:
// it must exit 1, every error line must carry one of the fixture's `# want:`
// messages after file:line, and each of them must be said. A fixture with `# needs: PLUGIN PATH ATTR
// [FIELDS]` shows a rule of the plugins' planned schema attributes; it is
// skipped, saying so, while the dumped schema does not carry that rule.
func TestBadFixturesFail(t *testing.T) {
	bin := binDir(t)
	files, _ := filepath.Glob("testdata/bad/*.yml")
	if len(files) < 25 {
		t.Fatalf("%d fixtures, want at least 25", len(files))
	}
	schemas := map[string]*kongschema.Schema{}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			wants, needs := header(t, file)
			if needs != "" {
				if why := missingRule(t, bin, schemas, needs); why != "" {
					t.Skipf("the dumped schema lacks the rule (%s): %s", needs, why)
				}
			}
			var out, errOut bytes.Buffer
			if code := run(bin, []string{file}, &out, &errOut); code != 1 {
				t.Errorf("exit %d, want 1; output %q", code, out.String())
			}
			lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
			seen := map[string]bool{}
			for _, l := range lines {
				ok := false
				for _, w := range wants {
					if strings.Contains(l, w) {
						ok, seen[w] = true, true
					}
				}
				if !errLine.MatchString(l) || !ok {
					t.Errorf("error line %q: want file:line and one of %q", l, wants)
				}
			}
			for _, w := range wants {
				if !seen[w] {
					t.Errorf("no error line says %q", w)
				}
			}
		})
	}
}

func header(t *testing.T, file string) (wants []string, needs string) {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() && strings.HasPrefix(sc.Text(), "#") {
		if v, ok := strings.CutPrefix(sc.Text(), "# want: "); ok {
			wants = append(wants, v)
		}
		if v, ok := strings.CutPrefix(sc.Text(), "# needs: "); ok {
			needs = v
		}
	}
	if len(wants) == 0 {
		t.Fatalf("%s: no `# want:` first line", file)
	}
	return wants, needs
}

// missingRule says why the plugin's dumped schema does not carry the rule
// "PLUGIN PATH ATTR [FIELDS]" ("" when it does): ATTR is a field attribute
// at PATH (array elements are looked through), or an entity check on the
// record at PATH naming FIELDS, there or at the schema's top level.
func missingRule(t *testing.T, bin string, schemas map[string]*kongschema.Schema, needs string) string {
	parts := strings.Fields(needs)
	if len(parts) < 3 {
		t.Fatalf("bad needs line %q", needs)
	}
	s := schemas[parts[0]]
	if s == nil {
		_, raw, err := kongschema.DumpSchema(filepath.Join(bin, parts[0]))
		if err != nil {
			t.Fatal(err)
		}
		if s, err = kongschema.ParseSchema(raw); err != nil {
			t.Fatal(err)
		}
		schemas[parts[0]] = s
	}
	f := s.Entity
	for _, name := range strings.Split(parts[1], ".") {
		if f.Elements != nil {
			f = f.Elements
		}
		if f = f.Field(name); f == nil {
			return "no field " + parts[1]
		}
	}
	if len(parts) == 3 {
		if v, ok := f.Attrs[parts[2]]; !ok || v == false {
			return "no " + parts[2] + " on " + parts[1]
		}
		return ""
	}
	fields := strings.Split(parts[3], ",")
	match := func(c kongschema.Check, prefix string) bool {
		l, _ := c.Arg.([]any)
		if c.Name != parts[2] || len(l) != len(fields) {
			return false
		}
		for i, n := range l {
			if n != prefix+fields[i] {
				return false
			}
		}
		return true
	}
	for _, c := range f.Checks {
		if match(c, "") {
			return ""
		}
	}
	for _, c := range s.Entity.Checks {
		if match(c, parts[1]+".") {
			return ""
		}
	}
	return "no " + parts[2] + " check on " + parts[3]
}
