package kongschema

// CheckMetaschema judges a plugin's schema as Kong 3.9 does when it loads a
// plugin: kong/db/schema/plugin_loader.lua load_subschema validates it with
// MetaSchema.MetaSubSchema (kong/db/schema/metaschema.lua: the attributes a
// field may carry and their types, attribute_types per field type,
// required_attributes, `default = { type = "self" }` i.e. the default must
// pass the field's own validation, entity_checks' shapes), then
// Entity.new_subschema (kong/db/schema/entity.lua, Schema.new_subschema in
// kong/db/schema/init.lua) requires every top-level field to be a field of
// the plugins entity (kong/db/schema/entities/plugins.lua) of a compatible
// type. Messages are Kong's. A few rules Kong does not have are marked
// "(subgate)": Kong accepts these schemas, and then misbehaves at run time.

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// CheckMetaschemaJSON checks a schema as -dump prints it; the error is an
// Errors listing every violation.
func CheckMetaschemaJSON(raw []byte) error {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("schema is not a JSON object: %w", err)
	}
	c := &metaChecker{}
	c.top(m)
	if len(c.errs) > 0 {
		return c.errs
	}
	return nil
}

type metaChecker struct{ errs Errors }

func (c *metaChecker) add(path []string, format string, args ...any) {
	c.errs = append(c.errs, Error{append([]string(nil), path...), fmt.Sprintf(format, args...)})
}

// The plugins entity's fields and their types: a plugin schema may only
// specialise these (SUBSCHEMA_BAD_FIELD, SUBSCHEMA_BAD_TYPE).
var pluginEntityFields = map[string]string{"id": "string", "name": "string", "instance_name": "string",
	"created_at": "integer", "updated_at": "integer", "route": "foreign", "service": "foreign",
	"consumer": "foreign", "config": "record", "protocols": "set", "enabled": "boolean", "tags": "set"}

func (c *metaChecker) top(m map[string]any) {
	for _, k := range sortedKeys(m) {
		switch k {
		case "name", "fields", "entity_checks", "shorthand_fields", "transformations":
		case "check":
			c.add([]string{k}, "expected a function")
		default:
			c.add([]string{k}, errUnknown)
		}
	}
	if name, ok := m["name"].(string); !ok {
		c.add([]string{"name"}, "%s", map[bool]string{true: errRequired, false: "expected a string"}[m["name"] == nil])
	} else if name == "" {
		c.add([]string{"name"}, "length must be at least 1")
	}
	if _, ok := m["fields"]; !ok {
		c.add([]string{"fields"}, "'fields' must be a table")
		return
	}
	if m["shorthand_fields"] != nil {
		// Each shorthand needs `func`, a Lua function: JSON cannot carry one.
		c.add([]string{"shorthand_fields"}, "func: required field missing")
	}
	if m["transformations"] != nil {
		c.add([]string{"transformations"}, "on_write/on_read are Lua functions: a plugin server schema cannot carry them")
	}
	defs := c.fields(m["fields"], nil)
	names := make([]string, 0, len(defs))
	for name := range defs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		want, ok := pluginEntityFields[name]
		got, _ := defs[name]["type"].(string)
		switch {
		case !ok:
			c.add([]string{name}, "error in definition of '%v': %s: cannot create a new field", m["name"], name)
		case got != want && !(want == "record" && got == "json"):
			c.add([]string{name}, "error in definition of '%v': %s: cannot change type in a specialized field", m["name"], name)
		}
	}
	if entity, err := ParseSchema(mustJSON(m)); err == nil {
		c.checks(m["entity_checks"], entity.Entity, []string{"entity_checks"})
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// fields checks a `fields` array (fields_array: each entry a map with one
// key) and returns the definitions by name.
func (c *metaChecker) fields(v any, path []string) map[string]map[string]any {
	list, ok := v.([]any)
	if !ok {
		c.add(with(path, "fields"), "expected an array")
		return nil
	}
	defs := map[string]map[string]any{}
	for i, entry := range list {
		em, ok := entry.(map[string]any)
		if !ok {
			c.add(with(path, "fields"), "each entry in fields must be a sub-table")
			continue
		}
		if len(em) != 1 {
			c.add(with(path, fmt.Sprintf("fields[%d]", i)), "length must be 1")
			continue
		}
		for name, def := range em {
			dm, ok := def.(map[string]any)
			if !ok {
				c.add(with(path, name), "'%s' must be a table", name)
				continue
			}
			defs[name] = dm
			c.field(dm, with(path, name))
		}
	}
	return defs
}

var validTypes = []string{"array", "boolean", "foreign", "function", "integer", "json", "map", "number", "record", "set", "string"}

// attributeTypes is metaschema.lua's attribute_types: the field types an
// attribute is allowed on.
var attributeTypes = map[string][]string{
	"between": {"integer", "number"}, "len_eq": {"array", "set", "string", "map"}, "match": {"string"},
	"one_of": {"string", "number", "integer"}, "contains": {"array", "set"}, "is_regex": {"string"},
	"timestamp": {"number", "integer"}, "uuid": {"string"}, "unique": {"string", "number", "integer", "foreign"},
	"unique_across_ws": {"string", "number", "integer", "foreign"},
	"abstract":         {"string", "number", "integer", "record", "array", "set", "map"},
	"json_schema":      {"json"}, "transient": {"string", "number", "integer", "array", "set", "boolean"},
}

var requiredAttributes = map[string][]string{"array": {"elements"}, "set": {"elements"},
	"map": {"keys", "values"}, "record": {"fields"}, "json": {"json_schema"}}

// attrCheck checks one attribute's value; "" is fine.
type attrCheck func(v any) string

var (
	isBool   attrCheck = func(v any) string { return typeMsg(v, "boolean") }
	isString attrCheck = func(v any) string { return typeMsg(v, "string") }
	isInt    attrCheck = func(v any) string { return typeMsg(v, "integer") }
	isNumber attrCheck = func(v any) string { return typeMsg(v, "number") }
	isArray  attrCheck = func(v any) string { return typeMsg(v, "array") }
	isAny    attrCheck = func(any) string { return "" }
)

func typeMsg(v any, want string) string {
	f := &Field{Type: want, Attrs: map[string]any{"len_min": 0.0}}
	if want == "array" {
		f.Elements = &Field{Type: "any", Attrs: map[string]any{}}
	}
	if e := validateField(f, v, nil); len(e) > 0 {
		return e[0].Msg
	}
	return ""
}

func stringsArray(v any) string {
	l, ok := v.([]any)
	if !ok {
		return "expected an array"
	}
	for _, e := range l {
		if _, ok := e.(string); !ok {
			return "expected a string"
		}
	}
	return ""
}

func matchList(v any) string {
	l, ok := v.([]any)
	if !ok {
		return "expected an array"
	}
	for _, e := range l {
		em, ok := e.(map[string]any)
		if !ok {
			return "expected a record"
		}
		if s, ok := em["pattern"].(string); !ok {
			return "pattern: required field missing"
		} else if _, err := luaPattern(s); err != nil {
			return err.Error() + " (subgate)"
		}
		for k := range em {
			if k != "pattern" && k != "err" {
				return k + ": unknown field"
			}
		}
	}
	return ""
}

// fieldAttributes is metaschema.lua's field_schema plus validators, with
// the check for each value. elements/keys/values/fields/default are
// handled in field().
var fieldAttributes = map[string]attrCheck{
	"type": isString, "required": isBool, "reference": isString, "examples": isArray, "auto": isBool,
	"unique": isBool, "unique_across_ws": isBool, "abstract": isBool, "generate_admin_api": isBool,
	"immutable": isBool, "err": isString, "encrypted": isBool, "referenceable": isBool, "transient": isBool,
	"json_schema": isAny, "deprecation": func(v any) string { return typeMsg(v, "record") },
	"description": func(v any) string {
		if s, ok := v.(string); !ok {
			return "expected a string"
		} else if len(s) < 10 || len(s) > 500 {
			return "length must be between 10 and 500"
		}
		return ""
	},
	"on_delete": func(v any) string {
		if s, _ := v.(string); s != "restrict" && s != "cascade" && s != "null" {
			return "expected one of: restrict, cascade, null"
		}
		return ""
	},
	"between": func(v any) string {
		l, ok := v.([]any)
		if !ok {
			return "expected an array"
		}
		for _, e := range l {
			if m := typeMsg(e, "number"); m != "" {
				return m
			}
		}
		if len(l) != 2 {
			return "length must be 2"
		}
		return ""
	},
	"eq": isAny, "ne": isAny, "gt": isNumber, "len_eq": isInt, "len_min": isInt, "len_max": isInt,
	"match": isPattern, "not_match": isPattern, "match_all": matchList, "match_none": matchList,
	"match_any": func(v any) string {
		m, ok := v.(map[string]any)
		if !ok {
			return "expected a record"
		}
		if _, ok := m["patterns"]; !ok {
			return "patterns: required field missing"
		}
		if msg := stringsArray(m["patterns"]); msg != "" {
			return "patterns: " + msg
		}
		return ""
	},
	"starts_with": isString, "one_of": isArray, "not_one_of": isArray, "contains": isAny,
	"is_regex": isBool, "timestamp": isBool, "uuid": isBool,
	"custom_validator": func(any) string { return "expected a function" },
	"mutually_exclusive_subsets": func(v any) string {
		l, ok := v.([]any)
		if !ok {
			return "expected an array"
		}
		for _, e := range l {
			if msg := stringsArray(e); msg != "" {
				return msg
			}
		}
		return ""
	},
	"shorthand_fields": func(any) string { return "func: required field missing" },
}

func isPattern(v any) string {
	s, ok := v.(string)
	if !ok {
		return "expected a string"
	}
	if _, err := luaPattern(s); err != nil {
		return err.Error() + " (subgate)"
	}
	return ""
}

// field is check_field plus the validation of the definition against
// field_schema.
func (c *metaChecker) field(def map[string]any, path []string) {
	typ, _ := def["type"].(string)
	if _, ok := def["type"]; !ok {
		c.add(path, "missing type declaration")
	} else if !contains(validTypes, typ) {
		c.add(with(path, "type"), "expected one of: %s", strings.Join(validTypes, ", "))
	}
	for _, attr := range sortedKeys(def) {
		v := def[attr]
		switch attr {
		case "elements", "keys", "values":
			if sub, ok := v.(map[string]any); ok {
				c.field(sub, with(path, attr))
			} else {
				c.add(path, "'%s' must be a table", attr)
			}
		case "fields":
			c.fields(v, path)
		case "entity_checks", "default":
		default:
			check, ok := fieldAttributes[attr]
			if !ok {
				c.add(with(path, attr), errUnknown)
			} else if msg := check(v); msg != "" {
				c.add(with(path, attr), "%s", msg)
			}
		}
		if allowed, ok := attributeTypes[attr]; ok && typ != "" && !contains(allowed, typ) {
			c.add(path, "field of type '%s' cannot have attribute '%s'", typ, attr)
		}
	}
	for _, attr := range requiredAttributes[typ] {
		if _, ok := def[attr]; !ok && !(typ == "record" && def["abstract"] == true) {
			c.add(path, "field of type '%s' must declare '%s'", typ, attr)
		}
	}
	if def["unique_across_ws"] == true && def["unique"] != true {
		c.add(with(path, "unique"), "value must be true")
	}
	if def["referenceable"] == true && typ != "string" {
		// Kong ignores it: only string fields (and string elements or map
		// values) are ever resolved, so a secret here would reach the plugin
		// as the literal reference.
		c.add(path, "referenceable is only honoured on string fields, not %s (subgate)", typ)
	}
	if len(c.errs) > 0 && hasPrefix(c.errs[len(c.errs)-1].Path, path) {
		return // the default is judged only against a sound definition
	}
	f, err := parseField(path[len(path)-1], def)
	if err != nil {
		return
	}
	if typ == "record" {
		c.checks(def["entity_checks"], f, with(path, "entity_checks"))
	} else if def["entity_checks"] != nil {
		c.add(with(path, "entity_checks"), "entity checks belong to records (subgate)")
	}
	if d, ok := def["default"]; ok {
		// `default = { type = "self" }`: the default is validated as a value
		// of the field itself, with all its validators.
		dv, _ := fill(f, d, true)
		for _, e := range validateField(f, dv, nil) {
			c.add(append(with(path, "default"), e.Path...), "%s", e.Msg)
		}
	}
}

func hasPrefix(p, prefix []string) bool {
	if len(p) < len(prefix) {
		return false
	}
	for i := range prefix {
		if p[i] != prefix[i] {
			return false
		}
	}
	return true
}

func contains(l []string, s string) bool {
	for _, e := range l {
		if e == s {
			return true
		}
	}
	return false
}

// checks validates an entity_checks array (entity_checks_schema): each
// entry names exactly one known checker with an argument of its shape. It
// also requires every field the check names to exist in rec (subgate: Kong
// does not look, and a wrong name fails every config or raises an error).
func (c *metaChecker) checks(v any, rec *Field, path []string) {
	if v == nil {
		return
	}
	list, ok := v.([]any)
	if !ok {
		c.add(path, "expected an array")
		return
	}
	var names []string
	for n := range checkers {
		names = append(names, n)
	}
	names = append(names, "custom_entity_check")
	sort.Strings(names)
	for i, entry := range list {
		p := with(path, fmt.Sprintf("[%d]", i))
		em, ok := entry.(map[string]any)
		if !ok {
			c.add(p, "expected a record")
			continue
		}
		for _, k := range sortedKeys(em) {
			if !contains(names, k) {
				c.add(with(p, k), errUnknown)
			}
		}
		if len(em) != 1 {
			c.add(p, "exactly one of these fields must be non-empty: %s", quotedNames(names))
			continue
		}
		for name, arg := range em {
			if contains(names, name) {
				c.checkArg(name, arg, rec, with(p, name))
			}
		}
	}
}

func (c *metaChecker) checkArg(name string, arg any, rec *Field, path []string) {
	exists := func(p []string, n string) {
		if rec.lookup(n) == nil {
			c.add(p, "no field %q in this record (subgate)", n)
		}
	}
	switch name {
	case "at_least_one_of", "only_one_of", "distinct", "mutually_required", "mutually_exclusive":
		if msg := stringsArray(arg); msg != "" {
			c.add(path, "%s", msg)
			return
		}
		for _, n := range stringList(arg) {
			exists(path, n)
		}
	case "custom_entity_check":
		c.add(path, "fn: a Lua function: a plugin server schema cannot carry one")
	default: // conditional, conditional_at_least_one_of, mutually_exclusive_sets
		m, ok := arg.(map[string]any)
		if !ok {
			c.add(path, "expected a record")
			return
		}
		shape := map[string]string{
			"conditional":                 "if_field:s if_match:v then_field:s then_match:v then_err:e",
			"conditional_at_least_one_of": "if_field:s if_match:v then_at_least_one_of:l then_err:e else_match:v else_then_at_least_one_of:l else_then_err:e",
			"mutually_exclusive_sets":     "set1:l set2:l",
		}[name]
		kinds := map[string]string{}
		for _, kv := range strings.Fields(shape) {
			k, kind, _ := strings.Cut(kv, ":")
			kinds[k] = kind
		}
		for _, k := range sortedKeys(m) {
			p := with(path, k)
			switch kinds[k] {
			case "":
				c.add(p, errUnknown)
			case "s":
				if s, ok := m[k].(string); !ok {
					c.add(p, "expected a string")
				} else {
					exists(p, s)
				}
			case "e":
				if _, ok := m[k].(string); !ok {
					c.add(p, "expected a string")
				}
			case "l":
				if msg := stringsArray(m[k]); msg != "" {
					c.add(p, "%s", msg)
				}
				for _, n := range stringList(m[k]) {
					exists(p, n)
				}
			case "v": // conditional_validators: required, elements, keys, values and the validators
				vm, ok := m[k].(map[string]any)
				if !ok {
					c.add(p, "expected a record")
					continue
				}
				for _, attr := range sortedKeys(vm) {
					check, known := fieldAttributes[attr]
					if attr == "elements" || attr == "keys" || attr == "values" {
						if sub, ok := vm[attr].(map[string]any); ok {
							c.field(sub, with(p, attr))
						}
						continue
					}
					if !known || (attr != "required" && !isValidator(attr)) {
						c.add(with(p, attr), errUnknown)
					} else if msg := check(vm[attr]); msg != "" {
						c.add(with(p, attr), "%s", msg)
					}
				}
			}
		}
	}
}

func isValidator(attr string) bool {
	return contains([]string{"between", "eq", "ne", "gt", "len_eq", "len_min", "len_max", "match", "not_match",
		"match_all", "match_none", "match_any", "starts_with", "one_of", "not_one_of", "contains", "is_regex",
		"timestamp", "uuid", "custom_validator", "mutually_exclusive_subsets"}, attr)
}
