package kongschema

import "gopkg.in/yaml.v3"

// yaml11Bools are the plain scalars Kong's YAML loader (lyaml 6.2.8,
// lyaml/implicit.lua to_bool; kong/db/declarative/init.lua lyaml.load)
// reads as booleans: YAML 1.1's, where gopkg.in/yaml.v3 (YAML 1.2) reads
// only true and false. So `match_user: off` is the string "off" to Go and
// the boolean false to Kong, which refuses it ("expected a string").
var yaml11Bools = map[string]string{
	"true": "true", "True": "true", "TRUE": "true", "false": "false", "False": "false", "FALSE": "false",
	"yes": "true", "Yes": "true", "YES": "true", "no": "false", "No": "false", "NO": "false",
	"on": "true", "On": "true", "ON": "true", "off": "false", "Off": "false", "OFF": "false",
}

// AsKongReadsYAML retags, in place, every plain (unquoted, untagged) scalar
// that Kong's loader reads as a boolean, so that decoding n gives what Kong
// gets.
func AsKongReadsYAML(n *yaml.Node) {
	if n == nil {
		return
	}
	if n.Kind == yaml.ScalarNode && n.Style == 0 && (n.Tag == "" || n.Tag == "!!str") {
		if b, ok := yaml11Bools[n.Value]; ok {
			n.Tag, n.Value = "!!bool", b
		}
	}
	for _, c := range n.Content {
		AsKongReadsYAML(c)
	}
}
