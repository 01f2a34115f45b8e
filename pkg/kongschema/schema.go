// Package kongschema is Kong 3.9's handling of plugin schemas, modelled in
// Go: the metaschema a plugin's -dump schema must pass (metaschema.go), the
// validation and defaults of a route's plugin config (validate.go), vault
// references (vault.go), and the bundled plugins' schemas kong.yml uses
// (bundled.go). `make validate` (spec/validate) gates deploys with it; the
// spec's stand-in for Kong (spec/kongsim) encodes configs with it.
package kongschema

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
)

// Schema is a plugin's Kong schema as its binary prints it with -dump:
// {"name": ..., "fields": [{"config": {...}}, ...], "entity_checks": [...]}.
// Kong turns it into a subschema of its plugins entity
// (kong/db/schema/plugin_loader.lua load_subschema -> Entity.new_subschema).
type Schema struct {
	Name string
	// Entity is the plugin entity as Kong validates it: a record whose
	// fields are the schema's fields (config, protocols, ...) and whose
	// entity checks are the schema's top-level ones, written with
	// "config.x" paths as Kong's bundled plugins write them.
	Entity *Field
	Raw    map[string]any
}

// Field is one Kong field definition. Attrs keeps every attribute as
// decoded from JSON; the validators read them from there.
type Field struct {
	Name          string
	Type          string
	Required      bool
	Default       any
	HasDefault    bool
	Referenceable bool
	Elements      *Field
	Keys, Values  *Field
	Fields        []*Field
	Checks        []Check
	Attrs         map[string]any
}

// Check is one entity check: {"at_least_one_of": ["a", "b"]} and the like.
type Check struct {
	Name string
	Arg  any
}

// Field returns the record's field named name, or nil.
func (f *Field) Field(name string) *Field {
	for _, sub := range f.Fields {
		if sub.Name == name {
			return sub
		}
	}
	return nil
}

// lookup resolves a dotted path ("config.redis.password") through records,
// as Kong's get_schema_field does.
func (f *Field) lookup(path string) *Field {
	for _, name := range strings.Split(path, ".") {
		if f == nil {
			return nil
		}
		f = f.Field(name)
	}
	return f
}

// ParseSchema reads a schema as -dump prints it (the "Schema" value).
// It does not judge it: CheckMetaschema does.
func ParseSchema(raw []byte) (*Schema, error) {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("schema is not a JSON object: %w", err)
	}
	name, _ := m["name"].(string)
	entity, err := parseField("", map[string]any{"type": "record", "fields": m["fields"], "entity_checks": m["entity_checks"]})
	if err != nil {
		return nil, err
	}
	// Entity.new_subschema (kong/db/schema/entity.lua) calls
	// make_records_required: every record reached from the top through
	// records only is required unless it says otherwise, so a missing one
	// is expanded with its defaults instead of being left null.
	var requireRecords func(*Field)
	requireRecords = func(rec *Field) {
		for _, f := range rec.Fields {
			if f.Type == "record" {
				if _, set := f.Attrs["required"]; !set {
					f.Required = true
				}
				requireRecords(f)
			}
		}
	}
	requireRecords(entity)
	return &Schema{Name: name, Entity: entity, Raw: m}, nil
}

// DumpSchema runs `bin -dump` and returns the plugin's name and its raw
// schema JSON, whole (Info drops attributes it does not name).
func DumpSchema(bin string) (string, json.RawMessage, error) {
	out, err := exec.Command(bin, "-dump").Output()
	if err != nil {
		return "", nil, fmt.Errorf("%s -dump: %w", bin, err)
	}
	var d struct {
		Protocol string
		Plugins  []struct {
			Name   string
			Schema json.RawMessage
		}
	}
	if err := json.Unmarshal(out, &d); err != nil {
		return "", nil, fmt.Errorf("%s -dump printed no JSON: %w", bin, err)
	}
	if d.Protocol != "ProtoBuf:1" || len(d.Plugins) != 1 {
		return "", nil, fmt.Errorf("%s -dump: want protocol ProtoBuf:1 and one plugin", bin)
	}
	return d.Plugins[0].Name, d.Plugins[0].Schema, nil
}

func parseField(name string, m map[string]any) (*Field, error) {
	f := &Field{Name: name, Attrs: m}
	f.Type, _ = m["type"].(string)
	f.Required, _ = m["required"].(bool)
	f.Referenceable, _ = m["referenceable"].(bool)
	f.Default, f.HasDefault = m["default"]
	for attr, dst := range map[string]**Field{"elements": &f.Elements, "keys": &f.Keys, "values": &f.Values} {
		if sub, ok := m[attr].(map[string]any); ok {
			var err error
			if *dst, err = parseField(name, sub); err != nil {
				return nil, err
			}
		}
	}
	if list, ok := m["fields"].([]any); ok {
		for i, entry := range list {
			em, ok := entry.(map[string]any)
			if !ok || len(em) != 1 {
				return nil, fmt.Errorf("%s: fields[%d] must be an object with one key", name, i)
			}
			for k, v := range em {
				vm, ok := v.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("%s: field %s must be an object", name, k)
				}
				sub, err := parseField(k, vm)
				if err != nil {
					return nil, err
				}
				f.Fields = append(f.Fields, sub)
			}
		}
	}
	if list, ok := m["entity_checks"].([]any); ok {
		for _, entry := range list {
			em, _ := entry.(map[string]any)
			for k, v := range em {
				f.Checks = append(f.Checks, Check{Name: k, Arg: v})
			}
		}
	}
	return f, nil
}

// with returns a copy of f whose attributes are overridden by over, as
// Kong's conditional entity checks validate with if_match/then_match
// tables whose metatable falls back to the field's definition.
func (f *Field) with(over map[string]any) *Field {
	attrs := map[string]any{}
	for k, v := range f.Attrs {
		attrs[k] = v
	}
	for k, v := range over {
		attrs[k] = v
	}
	g, err := parseField(f.Name, attrs)
	if err != nil {
		return f
	}
	if _, set := over["required"]; !set {
		g.Required = f.Required
	}
	return g
}

// luaPattern translates a Lua pattern (Kong's match, not_match, match_all,
// match_none and match_any use string.match) into a Go regexp. Balanced
// matches (%b), frontiers (%f) and back-references are not translated.
func luaPattern(p string) (*regexp.Regexp, error) {
	classes := map[byte]string{'a': `A-Za-z`, 'd': `0-9`, 'l': `a-z`, 'u': `A-Z`, 's': `\t\n\v\f\r `,
		'w': `A-Za-z0-9`, 'x': `0-9A-Fa-f`, 'p': `!-/:-@\[-` + "`" + `{-~`, 'c': `\x00-\x1f\x7f`}
	var b strings.Builder
	b.WriteString(`(?s)`)
	i := 0
	if strings.HasPrefix(p, "^") {
		b.WriteString(`^`)
		i = 1
	}
	// class returns the set body for %c (without brackets) and whether it is negated.
	class := func(c byte) (string, bool, error) {
		lower := c | 0x20
		if body, ok := classes[lower]; ok && c >= 'A' && c <= 'z' {
			return body, c != lower, nil
		}
		if c == 'b' || c == 'f' || (c >= '0' && c <= '9') {
			return "", false, fmt.Errorf("pattern %q (a Lua pattern): %%%c is not supported here", p, c)
		}
		return regexp.QuoteMeta(string(c)), false, nil
	}
	for i < len(p) {
		c := p[i]
		switch {
		case c == '$' && i == len(p)-1:
			b.WriteString(`$`)
			i++
			continue
		case c == '%' && i+1 < len(p):
			body, neg, err := class(p[i+1])
			if err != nil {
				return nil, err
			}
			if neg {
				b.WriteString(`[^` + body + `]`)
			} else {
				b.WriteString(`[` + body + `]`)
			}
			i += 2
		case c == '[':
			j := i + 1
			var set strings.Builder
			set.WriteString(`[`)
			if j < len(p) && p[j] == '^' {
				set.WriteString(`^`)
				j++
			}
			first := true
			for ; j < len(p) && (first || p[j] != ']'); j++ {
				first = false
				if p[j] == '%' && j+1 < len(p) {
					body, neg, err := class(p[j+1])
					if err != nil || neg {
						return nil, fmt.Errorf("pattern %q (a Lua pattern): negated class in a set is not supported", p)
					}
					set.WriteString(body)
					j++
				} else if p[j] == '-' && j+1 < len(p) && p[j+1] != ']' && set.Len() > 1 {
					set.WriteString(`-`)
				} else {
					set.WriteString(regexp.QuoteMeta(string(p[j])))
				}
			}
			if j >= len(p) {
				return nil, fmt.Errorf("pattern %q (a Lua pattern): malformed set", p)
			}
			b.WriteString(set.String() + `]`)
			i = j + 1
		case c == '.':
			b.WriteString(`.`)
			i++
		case c == '(' || c == ')':
			b.WriteByte(c)
			i++
			continue
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
			i++
		}
		// A quantifier applies to the single item just written.
		if i < len(p) {
			switch p[i] {
			case '*', '+', '?':
				b.WriteByte(p[i])
				i++
			case '-':
				b.WriteString(`*?`)
				i++
			}
		}
	}
	return regexp.Compile(b.String())
}

// LuaPattern translates a Lua pattern (a field's match) into the Go regexp
// it means, as the validators here apply it (see luaPattern).
func LuaPattern(p string) (*regexp.Regexp, error) { return luaPattern(p) }
