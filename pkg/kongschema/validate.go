package kongschema

// Kong 3.9's validation of a plugin config, read in kong/db/schema/init.lua
// (process_auto_fields, validate_field, Schema:validate, run_entity_check,
// Schema.validators, Schema.entity_checkers) and modelled here in Go.
// Kong collects errors in nested tables with no order; this model lists
// them all, in schema order, each with its path.

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"
)

// Error is one validation error at a path such as config.keys[0].kid.
// An empty path is an entity-check error of the plugin entity itself.
type Error struct {
	Path []string // segments; array indexes are written "[0]"
	Msg  string
}

func (e Error) PathString() string {
	var b strings.Builder
	for _, s := range e.Path {
		if b.Len() > 0 && !strings.HasPrefix(s, "[") {
			b.WriteByte('.')
		}
		b.WriteString(s)
	}
	return b.String()
}

func (e Error) Error() string {
	if len(e.Path) == 0 {
		return e.Msg
	}
	return e.PathString() + ": " + e.Msg
}

// Errors is every error found, in order; it is an error itself.
type Errors []Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

// Kong's messages (validation_errors in kong/db/schema/init.lua).
const (
	errRequired        = "required field missing"
	errUnknown         = "unknown field"
	errRequiredForChck = "field required for entity check"
)

func with(path []string, seg string) []string {
	return append(append([]string(nil), path...), seg)
}

// Validate does what Kong does with a plugin entry of a declarative
// config: process_auto_fields(..., "insert") fills defaults (null where a
// field has none), then Schema:validate checks every field and runs the
// entity checks, of the config record and of the plugin schema's top level.
// It returns the processed config and every error.
func (s *Schema) Validate(given map[string]any) (map[string]any, Errors) {
	entity := map[string]any{}
	if given != nil {
		entity["config"] = given
	}
	filled, _ := fill(s.Entity, entity, true)
	entity = filled.(map[string]any)
	cf := s.Entity.Field("config")
	if cf == nil {
		return nil, Errors{{Msg: "schema has no config field"}}
	}
	// Only config is checked field by field: the plugin entity's other
	// fields (route, protocols, ...) are Kong's, not the plugin's.
	v, ok := entity["config"]
	var errs Errors
	if ok {
		errs = validateField(cf, v, []string{"config"})
	} else if cf.Required {
		errs = Errors{{[]string{"config"}, errRequired}}
	}
	errs = append(errs, entityChecks(s.Entity, entity, nil, errs)...)
	config, _ := entity["config"].(map[string]any)
	return config, errs
}

// fill is adjust_field_for_context in the "insert" context: present is
// false for an absent value (Lua nil), and a JSON null is a present nil.
func fill(f *Field, v any, present bool) (any, bool) {
	if f.Attrs["abstract"] == true {
		return v, present
	}
	if !present {
		return missing(f)
	}
	switch val := v.(type) {
	case map[string]any:
		switch f.Type {
		case "record":
			out := make(map[string]any, len(val))
			for k, e := range val {
				out[k] = e
			}
			for _, sub := range f.Fields {
				e, ok := val[sub.Name]
				if e, ok = fill(sub, e, ok); ok {
					out[sub.Name] = e
				} else {
					delete(out, sub.Name)
				}
			}
			return out, true
		case "map":
			if f.Values != nil {
				out := make(map[string]any, len(val))
				for k, e := range val {
					out[k], _ = fill(f.Values, e, true)
				}
				return out, true
			}
		}
	case []any:
		if (f.Type == "array" || f.Type == "set") && f.Elements != nil {
			out := make([]any, 0, len(val))
			seen := map[any]bool{}
			for _, e := range val {
				// make_set drops repeated values (scalars only: Lua
				// compares tables by identity).
				if f.Type == "set" && isScalar(e) {
					if seen[e] {
						continue
					}
					seen[e] = true
				}
				e, _ = fill(f.Elements, e, true)
				out = append(out, e)
			}
			return out, true
		}
	}
	return v, true
}

// missing is handle_missing_field: the default, else null unless the field
// is required; a required record is expanded to collect nested defaults;
// a required field without default stays absent (and fails validation).
func missing(f *Field) (any, bool) {
	if f.HasDefault {
		d := deepCopy(f.Default)
		if m, ok := d.(map[string]any); ok && f.Type == "record" {
			return fill(f, m, true)
		}
		return d, true
	}
	if !f.Required {
		return nil, true
	}
	if f.Type == "record" {
		return fill(f, map[string]any{}, true)
	}
	return nil, false
}

func isScalar(v any) bool {
	switch v.(type) {
	case string, float64, bool, int:
		return true
	}
	return false
}

func deepCopy(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// validateRecord is Schema:validate of a record (full_check): every given
// field, unknown fields, required fields, then entity checks.
func validateRecord(f *Field, m map[string]any, path []string) Errors {
	var errs Errors
	for _, sub := range f.Fields {
		v, ok := m[sub.Name]
		if ok && v != nil {
			errs = append(errs, validateField(sub, v, with(path, sub.Name))...)
		} else if sub.Required {
			errs = append(errs, Error{with(path, sub.Name), errRequired})
		}
	}
	var unknown []string
	for k := range m {
		if f.Field(k) == nil {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		errs = append(errs, Error{with(path, k), errUnknown})
	}
	return append(errs, entityChecks(f, m, path, errs)...)
}

// validateField is Schema:validate_field.
func validateField(f *Field, v any, path []string) Errors {
	bad := func(msg string) Errors { return Errors{{path, msg}} }
	if v == nil {
		if f.Required {
			return bad(errRequired)
		}
		return nil
	}
	switch f.Type {
	case "array", "set":
		l, ok := v.([]any)
		if !ok {
			return bad(map[string]string{"array": "expected an array", "set": "expected a set"}[f.Type])
		}
		if f.Elements == nil {
			return bad("error in schema prevents from validating this field")
		}
		var errs Errors
		el := *f.Elements
		el.Required = true // validate_elements: a null element is an error
		for i, e := range l {
			errs = append(errs, validateField(&el, e, with(path, fmt.Sprintf("[%d]", i)))...)
		}
		if len(errs) > 0 {
			return errs
		}
	case "map":
		m, ok := v.(map[string]any)
		if !ok {
			return bad("expected a map")
		}
		if f.Keys == nil || f.Values == nil {
			return bad("error in schema prevents from validating this field")
		}
		// Kong stops at the first bad pair, in hash order; listing all
		// pairs is deterministic and says the same.
		keys, vals := *f.Keys, *f.Values
		keys.Required, vals.Required = true, true
		var errs Errors
		for _, k := range sortedKeys(m) {
			p := with(path, k)
			if e := validateField(&keys, k, p); len(e) > 0 {
				errs = append(errs, Error{p, "key: " + e[0].Msg})
				continue
			}
			errs = append(errs, validateField(&vals, m[k], p)...)
		}
		if len(errs) > 0 {
			return errs
		}
	case "record":
		m, ok := v.(map[string]any)
		if !ok {
			return bad("expected a record")
		}
		filled, _ := fill(f, m, true)
		return validateRecord(f, filled.(map[string]any), path)
	case "integer":
		n, ok := number(v)
		if !ok || n != math.Floor(n) || math.IsInf(n, 0) {
			return bad("expected an integer")
		}
	case "number":
		if _, ok := number(v); !ok {
			return bad("expected a number")
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return bad("expected a boolean")
		}
	case "string":
		s, ok := v.(string)
		if !ok {
			return bad("expected a string")
		}
		// A referenceable field holding a reference skips every validator;
		// the reference is resolved later, when the config is read.
		if f.Referenceable && IsReference(s) {
			return nil
		}
	case "any":
	default:
		return bad(fmt.Sprintf("invalid type: %s", f.Type))
	}
	if msg := runValidators(f, v); msg != "" {
		if e, ok := f.Attrs["err"].(string); ok {
			msg = e
		}
		return bad(msg)
	}
	return nil
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	}
	return 0, false
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// luaString is tostring() of a Lua value, as Kong's messages print them.
func luaString(v any) string {
	switch x := v.(type) {
	case float64:
		return fmt.Sprintf("%.14g", x)
	case nil:
		return "null"
	}
	return fmt.Sprint(v)
}

var uuidRE = regexp.MustCompile(`(?i)^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// runValidators runs Kong's validators in Schema.validators_order and
// returns the first failure's message, or "".
func runValidators(f *Field, v any) string {
	a := f.Attrs
	n, isNum := number(v)
	s, isStr := v.(string)
	length := func() int {
		switch x := v.(type) {
		case string:
			return len(x) // Lua's # counts bytes
		case []any:
			return len(x)
		case map[string]any:
			return len(x)
		}
		return 0
	}
	pattern := func(p any) (*regexp.Regexp, bool) {
		ps, _ := p.(string)
		re, err := luaPattern(ps)
		return re, err == nil
	}
	lenMin, hasLenMin := a["len_min"]
	if f.Type == "string" && !hasLenMin {
		lenMin, hasLenMin = 1.0, true // "empty strings are not accepted by default"
	}
	for _, name := range []string{"eq", "ne", "not_one_of", "one_of", "gt", "timestamp", "uuid", "is_regex",
		"between", "len_eq", "len_min", "len_max", "starts_with", "not_match", "match_none", "match",
		"match_all", "match_any", "contains", "mutually_exclusive_subsets"} {
		arg, ok := a[name]
		if name == "len_min" {
			arg, ok = lenMin, hasLenMin
		}
		if !ok || arg == nil {
			continue
		}
		switch name {
		case "eq":
			if v != arg {
				return "value must be " + luaString(arg)
			}
		case "ne":
			if v == arg {
				return "value must not be " + luaString(v)
			}
		case "one_of", "not_one_of":
			opts, _ := arg.([]any)
			found := false
			words := make([]string, len(opts))
			for i, o := range opts {
				words[i] = luaString(o)
				found = found || o == v
			}
			if name == "one_of" && !found {
				return "expected one of: " + strings.Join(words, ", ")
			}
			if name == "not_one_of" && found {
				return "must not be one of: " + strings.Join(words, ", ")
			}
		case "gt":
			if limit, _ := number(arg); isNum && !(n > limit) {
				return "value must be greater than " + luaString(limit)
			}
		case "timestamp":
			if arg == true && isNum && !(n > 0) {
				return "expected a valid timestamp"
			}
		case "uuid":
			if arg == true && isStr && !uuidRE.MatchString(s) {
				return "expected a valid UUID"
			}
		case "is_regex":
			if _, err := regexp.Compile(s); arg == true && isStr && err != nil {
				return "not a valid regex: " + s
			}
		case "between":
			l, _ := arg.([]any)
			if len(l) == 2 && isNum {
				lo, _ := number(l[0])
				hi, _ := number(l[1])
				if n < lo || n > hi {
					return fmt.Sprintf("value should be between %d and %d", int64(lo), int64(hi))
				}
			}
		case "len_eq", "len_min", "len_max":
			want, _ := number(arg)
			got := float64(length())
			if name == "len_eq" && got != want {
				return fmt.Sprintf("length must be %d", int64(want))
			}
			if name == "len_min" && got < want {
				return fmt.Sprintf("length must be at least %d", int64(want))
			}
			if name == "len_max" && got > want {
				return fmt.Sprintf("length must be at most %d", int64(want))
			}
		case "starts_with":
			if p, _ := arg.(string); isStr && !strings.HasPrefix(s, p) {
				return "should start with: " + p
			}
		case "match", "not_match":
			if re, ok := pattern(arg); ok && isStr && re.MatchString(s) != (name == "match") {
				return "invalid value: " + s
			}
		case "match_all", "match_none":
			l, _ := arg.([]any)
			for _, item := range l {
				im, _ := item.(map[string]any)
				if re, ok := pattern(im["pattern"]); ok && isStr && re.MatchString(s) != (name == "match_all") {
					if e, ok := im["err"].(string); ok {
						return e
					}
					return "invalid value: " + s
				}
			}
		case "match_any":
			am, _ := arg.(map[string]any)
			l, _ := am["patterns"].([]any)
			matched := false
			for _, p := range l {
				if re, ok := pattern(p); ok && isStr && re.MatchString(s) {
					matched = true
				}
			}
			if !matched {
				if e, ok := am["err"].(string); ok {
					return e
				}
				return "invalid value: " + s
			}
		case "contains":
			l, _ := v.([]any)
			found := false
			for _, e := range l {
				found = found || e == arg
			}
			if !found {
				return "expected to contain: " + luaString(arg)
			}
		case "mutually_exclusive_subsets":
			if msg := exclusiveSubsets(v, arg); msg != "" {
				return msg
			}
		}
	}
	return ""
}

func exclusiveSubsets(v, arg any) string {
	subsets, _ := arg.([]any)
	owner := map[any]int{}
	for i, sub := range subsets {
		l, _ := sub.([]any)
		for _, e := range l {
			owner[e] = i + 1
		}
	}
	var hit []int
	seen := map[int]bool{}
	l, _ := v.([]any)
	for _, e := range l {
		if i := owner[e]; i > 0 && !seen[i] {
			seen[i] = true
			hit = append(hit, i)
		}
	}
	if len(hit) <= 1 {
		return ""
	}
	parts := make([]string, len(hit))
	for j, i := range hit {
		parts[j] = "(" + quoted(subsets[i-1]) + ")"
	}
	return "these sets are mutually exclusive: " + strings.Join(parts, ", ")
}

// quoted is Kong's quoted_list: 'a', 'b'.
func quoted(l any) string {
	list, _ := l.([]any)
	words := make([]string, len(list))
	for i, w := range list {
		words[i] = "'" + luaString(w) + "'"
	}
	return strings.Join(words, ", ")
}

// getField is Kong's get_field over a dotted name; present is false for Lua nil.
func getField(m map[string]any, name string) (any, bool) {
	var cur any = m
	for _, part := range strings.Split(name, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// nonEmpty is Kong's is_nonempty: not null, not "", not an empty table.
func nonEmpty(v any, present bool) bool {
	switch x := v.(type) {
	case nil:
		return false
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return present
}

// checker mirrors an entry of Schema.entity_checkers: which argument keys
// name the fields, which of them must be present, and when it runs.
type checker struct {
	sources    []string // field_sources; nil: the argument is the list of names
	required   map[string]bool
	runMissing bool
	runInvalid bool
	fn         func(m map[string]any, arg map[string]any, names []string, rec *Field, path []string) (entity, custom string, field Errors)
	message    string
}

// checkers is set in init: its functions reach back into validateField.
var checkers map[string]checker

func init() { checkers = checkerTable() }

func checkerTable() map[string]checker {
	return map[string]checker{
		"at_least_one_of": {runMissing: true, runInvalid: true, message: "at least one of these fields must be non-empty: %s",
			fn: func(m map[string]any, _ map[string]any, names []string, _ *Field, _ []string) (string, string, Errors) {
				for _, n := range names {
					if nonEmpty(getField(m, n)) {
						return "", "", nil
					}
				}
				return quotedNames(names), "", nil
			}},
		"only_one_of": {runInvalid: true, message: "exactly one of these fields must be non-empty: %s",
			fn: func(m map[string]any, _ map[string]any, names []string, _ *Field, _ []string) (string, string, Errors) {
				count := 0
				for _, n := range names {
					if nonEmpty(getField(m, n)) {
						count++
					}
				}
				if count == 1 {
					return "", "", nil
				}
				return quotedNames(names), "", nil
			}},
		"distinct": {runInvalid: true, message: "values of these fields must be distinct: %s",
			fn: func(m map[string]any, _ map[string]any, names []string, _ *Field, _ []string) (string, string, Errors) {
				seen := map[any]bool{}
				for _, n := range names {
					v, ok := getField(m, n)
					if nonEmpty(v, ok) && isScalar(v) {
						if seen[v] {
							return quotedNames(names), "", nil
						}
						seen[v] = true
					}
				}
				return "", "", nil
			}},
		"mutually_required": {runMissing: true, message: "all or none of these fields must be set: %s",
			fn: func(m map[string]any, _ map[string]any, names []string, _ *Field, _ []string) (string, string, Errors) {
				count := 0
				for _, n := range names {
					if nonEmpty(getField(m, n)) {
						count++
					}
				}
				if count == 0 || count == len(names) {
					return "", "", nil
				}
				return quotedNames(names), "", nil
			}},
		"mutually_exclusive": {runMissing: true, message: "only one or none of these fields must be set: %s",
			fn: func(m map[string]any, _ map[string]any, names []string, _ *Field, _ []string) (string, string, Errors) {
				count := 0
				for _, n := range names {
					if nonEmpty(getField(m, n)) {
						count++
					}
				}
				if count <= 1 {
					return "", "", nil
				}
				return quotedNames(names), "", nil
			}},
		"mutually_exclusive_sets": {sources: []string{"set1", "set2"}, required: map[string]bool{"set1": true, "set2": true},
			runMissing: true, message: "these sets are mutually exclusive: %s",
			fn: func(m map[string]any, arg map[string]any, _ []string, _ *Field, _ []string) (string, string, Errors) {
				var set [2][]string
				for i, key := range []string{"set1", "set2"} {
					for _, n := range stringList(arg[key]) {
						if nonEmpty(getField(m, n)) {
							set[i] = append(set[i], n)
						}
					}
				}
				if len(set[0]) > 0 && len(set[1]) > 0 {
					return fmt.Sprintf("(%s), (%s)", quotedNames(set[0]), quotedNames(set[1])), "", nil
				}
				return "", "", nil
			}},
		"conditional": {sources: []string{"if_field", "then_field"}, required: map[string]bool{"if_field": true},
			runInvalid: true, message: "failed conditional validation given value of field '%s'",
			fn: func(m map[string]any, arg map[string]any, _ []string, rec *Field, path []string) (string, string, Errors) {
				ifName, _ := arg["if_field"].(string)
				thenName, _ := arg["then_field"].(string)
				ifValue, _ := getField(m, ifName)
				thenValue, _ := getField(m, thenName)
				ifMatch, _ := arg["if_match"].(map[string]any)
				thenMatch, _ := arg["then_match"].(map[string]any)
				ifField, thenField := rec.lookup(ifName), rec.lookup(thenName)
				if ifField == nil || thenField == nil {
					return "", "", nil
				}
				if len(validateField(ifField.with(ifMatch), ifValue, nil)) > 0 {
					return "", "", nil
				}
				thenPath := append(append([]string(nil), path...), strings.Split(thenName, ".")...)
				custom := ""
				if e, ok := arg["then_err"].(string); ok {
					custom = luaFormat(e, ifName)
				}
				if thenMatch["required"] == true && thenValue == nil {
					return ifName, "", Errors{{thenPath, errRequired}}
				}
				if errs := validateField(thenField.with(thenMatch), thenValue, thenPath); len(errs) > 0 {
					return ifName, custom, errs
				}
				return "", "", nil
			}},
		"conditional_at_least_one_of": {sources: []string{"if_field", "then_at_least_one_of", "else_then_at_least_one_of"},
			required: map[string]bool{"if_field": true}, runMissing: true, runInvalid: true,
			message: "at least one of these fields must be non-empty: %s",
			fn: func(m map[string]any, arg map[string]any, _ []string, rec *Field, _ []string) (string, string, Errors) {
				ifName, _ := arg["if_field"].(string)
				ifValue, present := getField(m, ifName)
				ifField := rec.lookup(ifName)
				if !present || ifField == nil {
					return "", "", nil
				}
				names, errKey := stringList(arg["then_at_least_one_of"]), "then_err"
				ifMatch, _ := arg["if_match"].(map[string]any)
				if len(validateField(ifField.with(ifMatch), ifValue, nil)) > 0 {
					elseMatch, ok := arg["else_match"].(map[string]any)
					if !ok || len(validateField(ifField.with(elseMatch), ifValue, nil)) > 0 {
						return "", "", nil
					}
					names, errKey = stringList(arg["else_then_at_least_one_of"]), "else_then_err"
				}
				for _, n := range names {
					if nonEmpty(getField(m, n)) {
						return "", "", nil
					}
				}
				custom := ""
				if e, ok := arg[errKey].(string); ok {
					custom = luaFormat(e, quotedNames(names))
				}
				return quotedNames(names), custom, nil
			}},
	}
}

func stringList(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func quotedNames(names []string) string {
	l := make([]any, len(names))
	for i, n := range names {
		l[i] = n
	}
	return quoted(l)
}

// entityChecks is run_entity_checks (full_check) over a record's checks.
// fieldErrs are the record's field errors so far (a check over a field
// with an error does not run unless the checker says so).
func entityChecks(rec *Field, m map[string]any, path []string, fieldErrs Errors) Errors {
	var errs Errors
	hasErr := map[string]bool{}
	for _, e := range fieldErrs {
		if len(e.Path) > len(path) {
			hasErr[e.Path[len(path)]] = true // Kong's errors table is keyed by field name
		}
	}
	for _, c := range rec.Checks {
		ck, ok := checkers[c.Name]
		if !ok {
			errs = append(errs, Error{path, fmt.Sprintf("entity check %q is not modelled", c.Name)})
			continue
		}
		argMap, _ := c.Arg.(map[string]any)
		var names []string
		required := map[string]bool{}
		if ck.sources == nil {
			names = stringList(c.Arg)
			for _, n := range names {
				required[n] = true
			}
		} else {
			for _, src := range ck.sources {
				switch v := argMap[src].(type) {
				case string:
					names = append(names, v)
					required[v] = required[v] || ck.required[src]
				case []any:
					for _, n := range stringList(v) {
						names = append(names, n)
						required[n] = required[n] || ck.required[src]
					}
				}
			}
		}
		runMissing := ck.runMissing || argMap["run_with_missing_fields"] == true
		runInvalid := ck.runInvalid || argMap["run_with_invalid_fields"] == true
		var missingNames []string
		allNil, allOK, skip := true, true, false
		for _, n := range names {
			v, present := getField(m, n)
			if !present {
				if !runMissing && required[n] {
					missingNames = append(missingNames, n)
				}
			} else {
				allNil = false
				// A reference in a referenceable field: the check does not run.
				if f := rec.lookup(n); f != nil && f.Type == "string" && f.Referenceable {
					if s, ok := v.(string); ok && IsReference(s) {
						skip = true
					}
				}
			}
			if hasErr[n] {
				allOK = false
			}
		}
		if skip || (!allOK && !runInvalid) || (allNil && !ck.runMissing) {
			continue
		}
		if len(missingNames) > 0 {
			for _, n := range missingNames {
				errs = append(errs, Error{append(append([]string(nil), path...), strings.Split(n, ".")...), errRequiredForChck})
			}
			continue
		}
		entityMsg, custom, fieldErrs := ck.fn(m, argMap, names, rec, path)
		errs = append(errs, fieldErrs...)
		if entityMsg == "" {
			continue
		}
		if custom == "" { // a then_err / else_then_err replaces Kong's message
			custom = fmt.Sprintf(ck.message, entityMsg)
		}
		errs = append(errs, Error{path, custom})
	}
	return errs
}

// luaFormat is Lua's string.format of a custom message with one argument:
// a message without %s drops it.
func luaFormat(msg, arg string) string {
	if strings.Contains(msg, "%s") {
		return fmt.Sprintf(msg, arg)
	}
	return msg
}
