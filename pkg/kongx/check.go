package kongx

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/subgate/subgate/pkg/config"
)

// checkMode is -check: what `make validate` (spec/validate) runs before a
// deploy, so that a config Kong's schema lets through but the plugin would
// refuse at instance start (then 500 on every request) is refused first,
// by the same code: config.DecodeUnresolved runs the declaration, its
// entity checks and every record's Check, as Instance.UnmarshalJSON's
// config.Decode does at start. Nothing is started, nothing is read (no
// secret file, no Redis); vault references are left for Kong.
var checkMode = flag.Bool("check", false, "read configs as Kong would send them (a JSON array; vault references unresolved) on stdin and print each one's problems as a JSON array of arrays of strings")

// Check returns the problems the plugin's start-time validation finds in
// raw, a config as Kong would send it before resolving vault references.
func (p *Plugin[C, D]) Check(raw []byte) []string {
	var c C
	config.Defaults(&c)
	var out []string
	if err := config.DecodeUnresolved(raw, &c); err != nil {
		for _, e := range config.Flatten(err) {
			out = append(out, e.Error())
		}
	}
	return out
}

// checkMain is -check's main: the exit status.
func (p *Plugin[C, D]) checkMain(in io.Reader, out io.Writer) int {
	var configs []json.RawMessage
	if err := json.NewDecoder(in).Decode(&configs); err != nil {
		fmt.Fprintf(os.Stderr, "%s -check: want a JSON array of configs on stdin: %v\n", p.Name, err)
		return 2
	}
	problems := make([][]string, len(configs))
	for i, raw := range configs {
		if problems[i] = p.Check(raw); problems[i] == nil {
			problems[i] = []string{}
		}
	}
	if err := json.NewEncoder(out).Encode(problems); err != nil {
		return 2
	}
	return 0
}
