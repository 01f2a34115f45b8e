package jwtverify

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The standards table (testdata/conformance.md) and the tests it names
// are kept honest here: every named test exists, every conformance test is
// named, and the README summary is the table's.

const (
	tablePath  = "testdata/conformance.md"
	repoRoot   = "../.."
	readmePath = repoRoot + "/docs/testing.md"
)

type tableRow struct {
	line                                                int
	rfc, section, requirement, level, subgate, followed string
	token                                               string
	tests                                               []string
}

var (
	rfcOrder    = []string{"7515", "7519", "7518", "8037", "8725", "6750", "7235", "payment"}
	levels      = []string{"MUST", "MUST NOT", "REQUIRED", "SHALL", "SHOULD", "SHOULD NOT", "RECOMMENDED", "MAY", "contract"}
	followedSet = []string{"yes", "partly", "no"}
	tokens      = []string{"both", "bearer", "payment"}
	// Conformance tests: each must be named by a row.
	conformanceName = regexp.MustCompile(`^Test(RFC(7515|7518|7519|8037|8725|6750|7235)|Conformance)`)
)

func readTable(t *testing.T) []tableRow {
	t.Helper()
	raw, err := os.ReadFile(tablePath)
	if err != nil {
		t.Fatal(err)
	}
	var rows []tableRow
	header := true
	for i, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		if header || strings.HasPrefix(cells[0], "---") {
			header = false
			continue
		}
		if len(cells) != 8 {
			t.Fatalf("%s:%d: %d cells, want 8 (a | inside a cell?)", tablePath, i+1, len(cells))
		}
		r := tableRow{line: i + 1, rfc: cells[0], section: cells[1], requirement: cells[2], level: cells[3],
			subgate: cells[4], followed: cells[5], token: cells[6]}
		for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(cells[7], -1) {
			r.tests = append(r.tests, m[1])
		}
		rows = append(rows, r)
	}
	return rows
}

// testFuncs maps each top-level test function in the repository to the
// sources of the files that declare it, and of the JSON case files in their
// package's testdata (table-driven specs such as TestPeerSuites name their
// cases there, by "description").
func testFuncs(t *testing.T) map[string][]string {
	t.Helper()
	decl := regexp.MustCompile(`(?m)^func (Test\w*)\(t \*testing\.T\)`)
	out := map[string][]string{}
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != repoRoot && (strings.HasPrefix(n, ".") || n == "bin" || n == "testdata" || n == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(src), -1) {
			out[m[1]] = append(out[m[1]], string(src))
			out[m[1]] = append(out[m[1]], jsonCases(t, filepath.Dir(path))...)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestStandardsTable(t *testing.T) {
	rows := readTable(t)
	if len(rows) < 50 {
		t.Fatalf("only %d rows parsed", len(rows))
	}
	funcs := testFuncs(t)
	named := map[string]bool{}
	for _, r := range rows {
		where := fmt.Sprintf("%s:%d (RFC %s %s)", tablePath, r.line, r.rfc, r.section)
		switch {
		case !slices.Contains(rfcOrder, r.rfc):
			t.Errorf("%s: unknown RFC %q", where, r.rfc)
		case !slices.Contains(levels, r.level):
			t.Errorf("%s: unknown level %q", where, r.level)
		case !slices.Contains(followedSet, r.followed):
			t.Errorf("%s: followed is %q, want yes, partly or no", where, r.followed)
		case !slices.Contains(tokens, r.token):
			t.Errorf("%s: token is %q, want both, bearer or payment", where, r.token)
		case r.section == "" || r.requirement == "" || r.subgate == "":
			t.Errorf("%s: an empty cell", where)
		case len(r.tests) == 0:
			t.Errorf("%s: no test", where)
		}
		for _, name := range r.tests {
			fn, sub, hasSub := strings.Cut(name, "/")
			srcs, ok := funcs[fn]
			if !ok {
				t.Errorf("%s: no test func %s in the repository", where, fn)
				continue
			}
			named[fn] = true
			if hasSub && !slices.ContainsFunc(srcs, func(src string) bool { return strings.Contains(src, `"`+sub+`"`) }) {
				t.Errorf("%s: %s has no case %q", where, fn, sub)
			}
		}
	}
	for fn := range funcs {
		if conformanceName.MatchString(fn) && !named[fn] {
			t.Errorf("%s is a conformance test but no row of %s names it", fn, tablePath)
		}
	}
	checkReadmeSummary(t, summary(rows))
}

// jsonCases is the contents of the JSON files under dir/testdata.
func jsonCases(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "testdata", "*", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// summary is the README's view of the table: rows by RFC and what is not
// (fully) followed.
func summary(rows []tableRow) string {
	var b strings.Builder
	b.WriteString("| RFC | rows | followed | partly | not followed |\n| --- | --- | --- | --- | --- |\n")
	count := map[string]map[string]int{}
	for _, r := range rows {
		if count[r.rfc] == nil {
			count[r.rfc] = map[string]int{}
		}
		count[r.rfc][r.followed]++
		count[r.rfc]["rows"]++
	}
	total := map[string]int{}
	for _, rfc := range rfcOrder {
		c := count[rfc]
		name := "RFC " + rfc
		if rfc == "payment" {
			name = "payment token's own"
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d |\n", name, c["rows"], c["yes"], c["partly"], c["no"])
		for k, v := range c {
			total[k] += v
		}
	}
	fmt.Fprintf(&b, "| **total** | %d | %d | %d | %d |\n\nRows not followed, or followed in part:\n\n", total["rows"], total["yes"], total["partly"], total["no"])
	var notes []string
	for _, r := range rows {
		if r.followed != "yes" {
			notes = append(notes, fmt.Sprintf("- RFC %s %s (%s; %s): %s %s", r.rfc, r.section, r.level, r.followed, r.requirement, r.subgate))
		}
	}
	b.WriteString(strings.Join(notes, "\n") + "\n")
	fixed := 0
	for _, r := range rows {
		if strings.Contains(r.subgate, "*fixed*") {
			fixed++
		}
	}
	fmt.Fprintf(&b, "\n%d rows are marked *fixed*: the table found a gap there, and the code now closes it.\n", fixed)
	return b.String()
}

func checkReadmeSummary(t *testing.T, want string) {
	t.Helper()
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	begin, end := "<!-- conformance:begin -->\n", "<!-- conformance:end -->"
	i, j := strings.Index(string(readme), begin), strings.Index(string(readme), end)
	if i < 0 || j < i {
		t.Fatal("README lacks the conformance markers")
	}
	if string(readme[i+len(begin):j]) == want {
		return
	}
	if os.Getenv("UPDATE_README") == "1" {
		out := string(readme[:i+len(begin)]) + want + string(readme[j:])
		if err := os.WriteFile(readmePath, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("README conformance summary is out of date; run UPDATE_README=1 go test ./pkg/jwtverify -run TestStandardsTable\nwant:\n%s", want)
}
