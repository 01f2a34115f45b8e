package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/subgate/subgate/spec/realkong"
)

// The checker (pkg/kongschema, what make validate runs) held to Kong
// (issue 20 part 3): every bad fixture is refused by `kong config parse`
// too, with the message its `# kong:` line quotes, unless that line says
// `accepts:` and why: a rule Kong's schema language cannot say, which make
// validate's own checks (the plugins' -check, spec/validate's rules)
// enforce instead; TestBadFixturesFail shows they do. Every good fixture,
// and the shipped kong.yml, is accepted by both.
func TestFixturesHeldToKong(t *testing.T) {
	kong, bin := realkong.Require(t), binDir(t)
	schemas, problems := loadSchemas(bin)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	bad, _ := filepath.Glob("testdata/bad/*.yml")
	good, _ := filepath.Glob("testdata/good/*.yml")
	good = append(good, "../../kong/kong.yml")
	// Each parse starts a Kong CLI (about 1.2 s of CPU): two at a time.
	verdicts := map[string][]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	slots := make(chan struct{}, 2)
	for _, file := range append(append([]string(nil), bad...), good...) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			errs := kongParse(kong, bin, schemas, file)
			<-slots
			mu.Lock()
			verdicts[file] = errs
			mu.Unlock()
		}()
	}
	wg.Wait()
	var refused, accepted []string
	for _, file := range bad {
		t.Run(filepath.Base(file), func(t *testing.T) {
			want := kongLine(t, file)
			errs := verdicts[file]
			why, accepts := strings.CutPrefix(want, "accepts: ")
			switch {
			case accepts && len(errs) > 0:
				t.Errorf("Kong refuses it, though the fixture says Kong cannot (%s):\n%s", why, errs[0])
			case accepts:
				accepted = append(accepted, filepath.Base(file)+": "+why)
			case len(errs) == 0:
				t.Error("Kong accepts it: a rule only make validate knows? Then say `# kong: accepts: why`")
			case !strings.Contains(errs[0], want):
				t.Errorf("Kong refuses it otherwise than %q:\n%s", want, errs[0])
			default:
				refused = append(refused, filepath.Base(file))
			}
		})
	}
	for _, file := range good {
		if errs := verdicts[file]; len(errs) > 0 {
			t.Errorf("%s: Kong refuses a good config:\n%s", file, errs[0])
		}
		var out, errOut bytes.Buffer
		if code := run(bin, []string{file}, &out, &errOut); code != 0 {
			t.Errorf("%s: make validate refuses a good config:\n%s", file, errOut.String())
		}
	}
	t.Logf("%d bad fixtures refused by kong config parse; %d it accepts, refused by make validate alone:\n  %s",
		len(refused), len(accepted), strings.Join(accepted, "\n  "))
}

func kongLine(t *testing.T, file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "# kong: "); ok {
			return v
		}
		if !strings.HasPrefix(l, "#") {
			break
		}
	}
	t.Fatalf("%s: no `# kong:` line (what Kong says, or accepts: why)", file)
	return ""
}
