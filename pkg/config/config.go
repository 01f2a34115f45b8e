// Package config is how a plugin declares its configuration once, as a Go
// struct with tags, and gets from that one declaration: the defaults New()
// sets, the validation at instance start (every problem at once), the Kong
// schema printed by -dump, and the README's config table.
//
// Tags on a field:
//
//	json:"name"        the Kong field name (required; "-" hides a field)
//	default:"v"        the default: a Go literal for scalars, JSON for arrays and
//	                   maps, or $name for a value declared with Define
//	kong:"..."         Kong field attributes, comma-separated: required,
//	                   referenceable, one_of=a|b, between=min|max, gt=n,
//	                   len_min=n, len_max=n, match=$name (a Lua pattern
//	                   declared with Pattern), starts_with=s
//	elements:"..."     the same attributes for an array's elements
//	keys:"..."         and for a map's keys, values:"..." its values
//	doc:"..."          the description (schema and README)
//
// A pointer-to-struct field is an optional record: Kong lets a route omit it
// (the schema says required: false, which keeps Kong's make_records_required
// from requiring it) and sends null, so the pointer stays nil; Defaults fills
// nothing in an absent one, and one a config gives starts from its declared
// defaults. Every other record is required, as Kong makes it.
//
// A struct type may add entity checks (combinations Kong refuses) by
// implementing EntityChecker, and the rules Kong's schema language cannot
// say by implementing Checker: Validate runs both, so instance start and a
// plugin binary's -check (what `make validate` runs) apply the same rules.
// Embedded structs are flattened, as encoding/json does; a shallower field
// of the same name wins (a Check or EntityChecks of its own must call the
// embedded one's).
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/subgate/subgate/pkg/kongschema"
)

// field is one declared field, parsed from its tags.
type field struct {
	name      string
	index     []int // reflect path from the declaring struct
	typ       reflect.Type
	def       string // raw default tag; "" = none
	hasDef    bool
	required  bool
	secret    bool // referenceable
	oneOf     []string
	between   *[2]float64
	gt        *float64
	lenMin    *int
	lenMax    *int
	match     *pattern
	startsW   string // starts_with
	doc       string
	kongType  string
	recordOf  []field // for records
	optional  bool    // a pointer-to-struct record: may be absent (nil)
	elemField *field  // for arrays (elements) and maps (values)
	keyField  *field  // for maps
}

// pattern is a Lua pattern Kong checks a string with (match), and the
// message it gives (err), translated once for Go's own check.
type pattern struct {
	lua, err string
	re       *regexp.Regexp
}

var patterns = map[string]*pattern{}

// Pattern declares a Lua pattern once, for tags to name as match=$name:
// Kong refuses a string that does not match it at load, with err as the
// message; Validate checks the same pattern (kongschema.LuaPattern
// translates it). It returns name.
func Pattern(name, lua, err string) string {
	re, e := kongschema.LuaPattern(lua)
	if e != nil {
		panic(fmt.Sprintf("config: pattern %s: %v", name, e))
	}
	enumsMu.Lock()
	defer enumsMu.Unlock()
	patterns[name] = &pattern{lua: lua, err: err, re: re}
	return name
}

// Matches reports whether s matches the pattern declared as name.
func Matches(name, s string) bool {
	enumsMu.Lock()
	p := patterns[name]
	enumsMu.Unlock()
	if p == nil {
		panic("config: no pattern " + name)
	}
	return p.re.MatchString(s)
}

var (
	enumsMu sync.Mutex
	enums   = map[string][]string{}
	defined = map[string]string{}
)

// Define declares a default that code outside the config needs too (a
// writer's key prefix, a stream name), once, for tags to name as
// default:"$name".
func Define(name, value string) string {
	enumsMu.Lock()
	defer enumsMu.Unlock()
	defined[name] = value
	return value
}

// Enum declares a list of allowed values once, for tags to name as
// one_of=$name (for example the algorithms a key may be configured with).
func Enum(name string, values []string) []string {
	enumsMu.Lock()
	defer enumsMu.Unlock()
	enums[name] = values
	return values
}

var (
	cacheMu sync.Mutex
	cache   = map[reflect.Type][]field{}
)

// fields returns the declared fields of struct type t, flattening embedded
// structs. It panics on a malformed declaration: that is a programming
// error, caught by every plugin's tests.
func fields(t reflect.Type) []field {
	cacheMu.Lock()
	if f, ok := cache[t]; ok {
		cacheMu.Unlock()
		return f
	}
	cacheMu.Unlock()
	var out []field
	seen := map[string]bool{}
	var walk func(t reflect.Type, index []int, depth int)
	walk = func(t reflect.Type, index []int, depth int) {
		var embedded []reflect.StructField
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			if sf.Anonymous && sf.Type.Kind() == reflect.Struct && sf.Tag.Get("json") == "" {
				embedded = append(embedded, sf) // flattened, exported or not, as encoding/json does
				continue
			}
			if !sf.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				panic(fmt.Sprintf("config: %s.%s has no json name", t, sf.Name))
			}
			if seen[name] {
				continue // shadowed by a shallower field
			}
			seen[name] = true
			out = append(out, parseField(sf, append(slices.Clone(index), i)))
		}
		for _, sf := range embedded { // after the struct's own fields: those shadow
			walk(sf.Type, append(slices.Clone(index), sf.Index...), depth+1)
		}
	}
	walk(t, nil, 0)
	cacheMu.Lock()
	cache[t] = out
	cacheMu.Unlock()
	return out
}

func parseField(sf reflect.StructField, index []int) field {
	name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
	f := field{name: name, index: index, typ: sf.Type, doc: sf.Tag.Get("doc")}
	f.def, f.hasDef = sf.Tag.Lookup("default")
	if ref, ok := strings.CutPrefix(f.def, "$"); ok {
		enumsMu.Lock()
		d, known := defined[ref]
		enumsMu.Unlock()
		if !known {
			panic(fmt.Sprintf("config: field %s: default names nothing defined as %q", name, ref))
		}
		f.def = d
	}
	bad := func(format string, a ...any) {
		panic(fmt.Sprintf("config: field %s: %s", name, fmt.Sprintf(format, a...)))
	}
	parseAttrs(&f, sf.Tag.Get("kong"), bad)
	if f.doc != "" && (len(f.doc) < 10 || len(f.doc) > 500) {
		bad("doc must have 10 to 500 characters (Kong's metaschema, description)")
	}
	f.kongType = kongType(sf.Type)
	switch sf.Type.Kind() {
	case reflect.Struct:
		f.recordOf = fields(sf.Type)
	case reflect.Pointer:
		f.recordOf, f.optional = fields(sf.Type.Elem()), true
		if f.required {
			bad("an optional record (pointer) cannot be required")
		}
	case reflect.Slice, reflect.Map:
		e := field{name: name, typ: sf.Type.Elem(), kongType: kongType(sf.Type.Elem())}
		if e.typ.Kind() == reflect.Struct {
			e.recordOf = fields(e.typ)
		}
		tag := "elements"
		if sf.Type.Kind() == reflect.Map {
			tag = "values"
			k := field{name: name, typ: sf.Type.Key(), kongType: "string"}
			parseAttrs(&k, sf.Tag.Get("keys"), bad)
			f.keyField = &k
		}
		parseAttrs(&e, sf.Tag.Get(tag), bad)
		f.elemField = &e
	}
	if f.secret && f.kongType != "string" {
		bad("referenceable applies to strings only")
	}
	if f.hasDef && f.recordOf != nil {
		bad("a record takes its defaults from its fields")
	}
	if f.hasDef {
		if err := setDefault(reflect.New(sf.Type).Elem(), f.def); err != nil {
			bad("default %q: %v", f.def, err)
		}
	}
	return f
}

// parseAttrs reads a kong-style tag (kong, elements, keys, values) into f.
func parseAttrs(f *field, tag string, bad func(string, ...any)) {
	for _, attr := range strings.Split(tag, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(attr), "=")
		switch k {
		case "":
		case "required":
			f.required = true
		case "referenceable":
			f.secret = true
		case "one_of":
			if name, ok := strings.CutPrefix(v, "$"); ok {
				enumsMu.Lock()
				f.oneOf = enums[name]
				enumsMu.Unlock()
				if f.oneOf == nil {
					bad("one_of names no enum %q", name)
				}
			} else {
				f.oneOf = strings.Split(v, "|")
			}
		case "between":
			lo, hi, _ := strings.Cut(v, "|")
			a, err1 := strconv.ParseFloat(lo, 64)
			b, err2 := strconv.ParseFloat(hi, 64)
			if err1 != nil || err2 != nil || a > b {
				bad("between=%q", v)
			}
			f.between = &[2]float64{a, b}
		case "gt":
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				bad("gt=%q", v)
			}
			f.gt = &n
		case "len_min", "len_max":
			n, err := strconv.Atoi(v)
			if err != nil {
				bad("%s=%q", k, v)
			}
			if k == "len_min" {
				f.lenMin = &n
			} else {
				f.lenMax = &n
			}
		case "match":
			name, _ := strings.CutPrefix(v, "$")
			enumsMu.Lock()
			f.match = patterns[name]
			enumsMu.Unlock()
			if f.match == nil {
				bad("match names no pattern %q (config.Pattern)", v)
			}
		case "starts_with":
			f.startsW = v
		default:
			bad("unknown kong attribute %q", k)
		}
	}
}

func kongType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int32, reflect.Int64:
		return "integer"
	case reflect.Float64:
		return "number"
	case reflect.Slice:
		return "array"
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			panic(fmt.Sprintf("config: map key %s is not a string", t.Key()))
		}
		return "map"
	case reflect.Struct:
		return "record"
	case reflect.Pointer:
		if t.Elem().Kind() == reflect.Struct {
			return "record" // optional
		}
	}
	panic(fmt.Sprintf("config: type %s has no Kong form", t))
}

func setDefault(v reflect.Value, def string) error {
	switch v.Kind() {
	case reflect.String:
		v.SetString(def)
	case reflect.Bool:
		b, err := strconv.ParseBool(def)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(def, 10, 64)
		if err != nil {
			return err
		}
		v.SetInt(n)
	case reflect.Float64:
		n, err := strconv.ParseFloat(def, 64)
		if err != nil {
			return err
		}
		v.SetFloat(n)
	default:
		return json.Unmarshal([]byte(def), v.Addr().Interface())
	}
	return nil
}

// Defaults sets every declared default on *ptr (records included).
func Defaults(ptr any) { setDefaults(ptr, false) }

// FillZero sets the declared default on every field left at a zero value
// the declaration does not allow (a nil list, a zero timeout): the fill for
// configs built in Go (tests, tools) rather than sent by Kong. A zero the
// declaration allows (leeway 0, cache_size 0) is kept.
func FillZero(ptr any) { setDefaults(ptr, true) }

func setDefaults(ptr any, onlyForbiddenZero bool) {
	v := reflect.ValueOf(ptr).Elem()
	var walk func(v reflect.Value, fs []field)
	walk = func(v reflect.Value, fs []field) {
		for _, f := range fs {
			fv := v.FieldByIndex(f.index)
			switch {
			case f.optional: // absent: nothing to fill
				if !fv.IsNil() {
					walk(fv.Elem(), f.recordOf)
				}
			case f.recordOf != nil: // records declare no default of their own
				walk(fv, f.recordOf)
			case f.hasDef && (!onlyForbiddenZero || fv.IsZero() && !zeroAllowed(f)):
				_ = setDefault(fv, f.def) // checked when the declaration was parsed
			}
		}
	}
	walk(v, fields(v.Type()))
}

func zeroAllowed(f field) bool {
	var errs []error
	validateValue(&errs, f.name, reflect.New(f.typ).Elem(), f, false)
	return len(errs) == 0 && f.kongType != "string" && f.kongType != "array" && f.kongType != "map"
}

// Decode reads the config Kong sent into *ptr, which holds the defaults
// (New() set them), and validates it. Kong's own fields (route_id, __seq__,
// ...) are ignored; null leaves a field as it was.
func Decode(raw []byte, ptr any) error { return decode(raw, ptr, false) }

// DecodeUnresolved is Decode before Kong has resolved the vault references
// (a plugin binary's -check, what `make validate` runs): a reference in a
// referenceable field is left for Kong, and every rule that reads the
// field's value skips it, as Kong's own checks do.
func DecodeUnresolved(raw []byte, ptr any) error { return decode(raw, ptr, true) }

func decode(raw []byte, ptr any, unresolved bool) error {
	v := reflect.ValueOf(ptr).Elem()
	prepareGiven(raw, v, fields(v.Type()))
	if err := json.Unmarshal(raw, ptr); err != nil {
		return fmt.Errorf("decoding config: %w", err)
	}
	return validateAll(ptr, unresolved)
}

// prepareGiven empties the map fields raw sets: encoding/json merges an
// object into an existing map, and a route's map replaces the default one.
// An optional record raw gives (not null) that is still absent starts from
// its declared defaults, as a required record does.
func prepareGiven(raw []byte, v reflect.Value, fs []field) {
	var given map[string]json.RawMessage
	if json.Unmarshal(raw, &given) != nil {
		return // Unmarshal reports it
	}
	for _, f := range fs {
		r, ok := given[f.name]
		if !ok {
			continue
		}
		switch fv := v.FieldByIndex(f.index); {
		case f.kongType == "map":
			fv.SetZero()
		case f.optional:
			if string(r) == "null" {
				continue // json sets the pointer to nil: absent
			}
			if fv.IsNil() {
				fv.Set(reflect.New(f.typ.Elem()))
				Defaults(fv.Interface())
			}
			prepareGiven(r, fv.Elem(), f.recordOf)
		case f.kongType == "record":
			prepareGiven(r, fv, f.recordOf)
		}
	}
}

// EntityChecker is implemented by a config struct whose fields must be
// set in certain combinations.
type EntityChecker interface {
	EntityChecks() []Check
}

// Checker is implemented by a config struct with rules Kong's schema
// language cannot say (a pattern's placeholders, a key's PEM, two fields
// that only together are wrong): checks without I/O, run by Validate after
// the record's fields and entity checks, so at instance start and by
// -check alike. A value holding a vault reference is not known yet: skip
// it (IsReference).
type Checker interface {
	Check() error
}

// Validate checks *ptr against its declaration and its Check rules, and
// returns every problem at once, each naming its field path.
func Validate(ptr any) error { return validateAll(ptr, false) }

func validateAll(ptr any, unresolved bool) error {
	v := reflect.ValueOf(ptr).Elem()
	var errs []error
	validate(&errs, "config", v, fields(v.Type()), unresolved)
	return errors.Join(errs...)
}

func validate(errs *[]error, path string, v reflect.Value, fs []field, unresolved bool) {
	n := len(*errs)
	for _, f := range fs {
		validateValue(errs, path+"."+f.name, v.FieldByIndex(f.index), f, unresolved)
	}
	if ec, ok := as[EntityChecker](v); ok {
		for _, c := range ec.EntityChecks() {
			if err := c.eval(v, fs); err != nil {
				*errs = append(*errs, fmt.Errorf("%s: %w", path, err))
			}
		}
	}
	// The Check rules assume what the declaration says holds (a known
	// algorithm, a pattern that starts with /): only on a record without
	// errors so far.
	if ck, ok := as[Checker](v); ok && len(*errs) == n {
		for _, err := range Flatten(ck.Check()) {
			*errs = append(*errs, fmt.Errorf("%s: %w", path, err))
		}
	}
}

// Flatten lists a joined error's errors (nil: none).
func Flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Flatten(e)...)
		}
		return out
	}
	return []error{err}
}

func as[T any](v reflect.Value) (T, bool) {
	if v.CanAddr() {
		v = v.Addr()
	}
	t, ok := v.Interface().(T)
	return t, ok
}

func validateValue(errs *[]error, path string, fv reflect.Value, f field, unresolved bool) {
	fail := func(format string, a ...any) {
		*errs = append(*errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, a...)))
	}
	if f.required && fv.IsZero() && f.kongType != "boolean" && f.kongType != "record" {
		fail("required field missing")
		return
	}
	switch f.kongType {
	case "string":
		s := fv.String()
		if s == "" {
			return
		}
		if f.secret && IsReference(s) {
			if !unresolved {
				fail("the vault reference was not resolved (Kong resolves it before the plugin starts; is the vault configured?)")
			}
			return // Kong skips every validator of a reference
		}
		if f.oneOf != nil && !slices.Contains(f.oneOf, s) {
			fail("expected one of: %s", strings.Join(f.oneOf, ", "))
		}
		checkLen(fail, len(s), f, "length")
		if f.startsW != "" && !strings.HasPrefix(s, f.startsW) {
			fail("should start with: %s", f.startsW)
		}
		if f.match != nil && !f.match.re.MatchString(s) {
			if f.match.err != "" {
				fail("%s", f.match.err)
			} else {
				fail("invalid value: %s", s)
			}
		}
	case "integer", "number":
		var n float64
		if f.kongType == "integer" {
			n = float64(fv.Int())
		} else {
			n = fv.Float()
		}
		if f.oneOf != nil && !slices.Contains(f.oneOf, strconv.FormatFloat(n, 'f', -1, 64)) {
			fail("expected one of: %s", strings.Join(f.oneOf, ", "))
		}
		if f.between != nil && (n < f.between[0] || n > f.between[1]) {
			fail("value should be between %s and %s", num(f.between[0]), num(f.between[1]))
		}
		if f.gt != nil && n <= *f.gt {
			fail("value must be greater than %s", num(*f.gt))
		}
	case "array":
		checkLen(fail, fv.Len(), f, "length")
		for i := 0; i < fv.Len(); i++ {
			validateValue(errs, fmt.Sprintf("%s[%d]", path, i+1), fv.Index(i), *f.elemField, unresolved)
		}
	case "map":
		checkLen(fail, fv.Len(), f, "size")
		iter := fv.MapRange()
		for iter.Next() {
			if f.keyField != nil {
				validateValue(errs, path+" key "+strconv.Quote(iter.Key().String()), iter.Key(), *f.keyField, unresolved)
			}
			validateValue(errs, path+"."+iter.Key().String(), iter.Value(), *f.elemField, unresolved)
		}
	case "record":
		if f.optional {
			if fv.IsNil() {
				return // absent: its check does not run
			}
			fv = fv.Elem()
		}
		validate(errs, path, fv, f.recordOf, unresolved)
	}
}

func checkLen(fail func(string, ...any), n int, f field, what string) {
	if f.lenMin != nil && n < *f.lenMin {
		fail("%s must be at least %d", what, *f.lenMin)
	}
	if f.lenMax != nil && n > *f.lenMax {
		fail("%s must be at most %d", what, *f.lenMax)
	}
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
