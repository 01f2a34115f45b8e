package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Check is one Kong entity check on a record, evaluated in Go as Kong's
// kong/db/schema/init.lua entity_checkers evaluate it: a field counts as
// set when Kong's is_nonempty says so (not null, not "", not an empty
// array or map; a boolean always is), and a check any of whose fields
// holds a vault reference in a referenceable field does not run (Kong's
// run_entity_check skips it: the value is not known at load).
type Check struct {
	kind   string
	fields []string
	// conditional and conditional_at_least_one_of.
	ifField              string
	ifMatch, elseMatch   *Match
	thenField            string
	thenMatch            Match
	thenAny, elseThenAny []string
	thenErr              string // %s: the if field (conditional) or the list of fields (at least one of)
	elseErr              string // conditional_at_least_one_of's else_then_err
}

// Match is the part of a field definition a conditional check validates
// the if field or the then field with (Kong's if_match, then_match,
// else_match), on top of the field's own definition.
type Match struct {
	Required bool
	Eq       any      // a boolean, integer or string
	OneOf    []string // strings
	LenMin   *int
	LenMax   *int
}

// N is a length for Match.
func N(n int) *int { return &n }

func (m Match) MarshalJSON() ([]byte, error) {
	out := map[string]any{}
	if m.Required {
		out["required"] = true
	}
	if m.Eq != nil {
		out["eq"] = m.Eq
	}
	if m.OneOf != nil {
		out["one_of"] = m.OneOf
	}
	if m.LenMin != nil {
		out["len_min"] = *m.LenMin
	}
	if m.LenMax != nil {
		out["len_max"] = *m.LenMax
	}
	return json.Marshal(out)
}

// AtLeastOneOf: one of the fields must be set.
func AtLeastOneOf(fields ...string) Check { return Check{kind: "at_least_one_of", fields: fields} }

// OnlyOneOf: exactly one of the fields must be set.
func OnlyOneOf(fields ...string) Check { return Check{kind: "only_one_of", fields: fields} }

// MutuallyExclusive: at most one of the fields may be set.
func MutuallyExclusive(fields ...string) Check {
	return Check{kind: "mutually_exclusive", fields: fields}
}

// MutuallyRequired: all of the fields are set, or none.
func MutuallyRequired(fields ...string) Check {
	return Check{kind: "mutually_required", fields: fields}
}

// RequiredWhen: thenField is required when ifField equals eq.
func RequiredWhen(ifField string, eq any, thenField string) Check {
	return Conditional(ifField, Match{Eq: eq}, thenField, Match{Required: true}, "")
}

// Conditional: when ifField passes ifMatch, thenField must pass thenMatch;
// err (optional, %s the if field) replaces Kong's entity message.
func Conditional(ifField string, ifMatch Match, thenField string, thenMatch Match, err string) Check {
	return Check{kind: "conditional", ifField: ifField, ifMatch: &ifMatch, thenField: thenField, thenMatch: thenMatch, thenErr: err}
}

// ConditionalAtLeastOneOf: when ifField passes ifMatch, one of then must be
// set; else, when it passes elseMatch (nil: no else), one of elseThen.
// thenErr and elseErr (optional, %s the list of fields) replace Kong's
// message.
func ConditionalAtLeastOneOf(ifField string, ifMatch Match, then []string, thenErr string, elseMatch *Match, elseThen []string, elseErr string) Check {
	return Check{kind: "conditional_at_least_one_of", ifField: ifField, ifMatch: &ifMatch, thenAny: then, thenErr: thenErr,
		elseMatch: elseMatch, elseThenAny: elseThen, elseErr: elseErr}
}

// MarshalJSON writes the check as Kong's schema writes it.
func (c Check) MarshalJSON() ([]byte, error) {
	switch c.kind {
	case "conditional":
		arg := map[string]any{"if_field": c.ifField, "if_match": c.ifMatch, "then_field": c.thenField, "then_match": c.thenMatch}
		if c.thenErr != "" {
			arg["then_err"] = c.thenErr
		}
		return json.Marshal(map[string]any{c.kind: arg})
	case "conditional_at_least_one_of":
		arg := map[string]any{"if_field": c.ifField, "if_match": c.ifMatch, "then_at_least_one_of": c.thenAny}
		if c.thenErr != "" {
			arg["then_err"] = c.thenErr
		}
		if c.elseMatch != nil {
			arg["else_match"], arg["else_then_at_least_one_of"] = c.elseMatch, c.elseThenAny
			if c.elseErr != "" {
				arg["else_then_err"] = c.elseErr
			}
		}
		return json.Marshal(map[string]any{c.kind: arg})
	}
	return json.Marshal(map[string]any{c.kind: c.fields})
}

func (c Check) String() string {
	switch c.kind {
	case "conditional":
		if c.thenMatch.Required {
			return fmt.Sprintf("`%s` required when `%s` is %s", c.thenField, c.ifField, c.ifMatch)
		}
		return fmt.Sprintf("`%s` %s when `%s` is %s", c.thenField, c.thenMatch, c.ifField, c.ifMatch)
	case "conditional_at_least_one_of":
		s := fmt.Sprintf("one of `%s` when `%s` is %s", strings.Join(c.thenAny, "`, `"), c.ifField, c.ifMatch)
		if c.elseMatch != nil {
			s += fmt.Sprintf("; one of `%s` when it is %s", strings.Join(c.elseThenAny, "`, `"), c.elseMatch)
		}
		return s
	}
	return strings.ReplaceAll(c.kind, "_", " ") + ": `" + strings.Join(c.fields, "`, `") + "`"
}

// String renders a Match for the README's entity-check lines.
func (m Match) String() string {
	var r []string
	if m.Eq != nil {
		r = append(r, fmt.Sprintf("`%v`", m.Eq))
	}
	if m.OneOf != nil {
		r = append(r, "one of "+strings.Join(m.OneOf, ", "))
	}
	if m.LenMin != nil {
		r = append(r, fmt.Sprintf("of length ≥ %d", *m.LenMin))
	}
	if m.LenMax != nil {
		r = append(r, fmt.Sprintf("of length ≤ %d", *m.LenMax))
	}
	return strings.Join(r, ", ")
}

// null is Kong's null for a Go value: an absent string (Kong drops ""), a
// nil slice, map or pointer. Numbers and booleans are never absent: Kong
// fills their defaults.
func null(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String:
		return v.Len() == 0
	case reflect.Slice, reflect.Map, reflect.Pointer:
		return v.IsNil()
	}
	return false
}

// nonEmpty is Kong's is_nonempty.
func nonEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String, reflect.Slice, reflect.Map:
		return v.Len() > 0
	case reflect.Pointer:
		return !v.IsNil()
	}
	return true
}

// ok is validate_field of a value with the field's definition extended by
// m: null passes unless m requires it, as a field that is not required.
func (m Match) ok(v reflect.Value) bool {
	if null(v) {
		return !m.Required
	}
	if m.Eq != nil && !equal(v, m.Eq) {
		return false
	}
	if m.OneOf != nil && (v.Kind() != reflect.String || !slices.Contains(m.OneOf, v.String())) {
		return false
	}
	n := 0
	switch v.Kind() {
	case reflect.String, reflect.Slice, reflect.Map:
		n = v.Len()
	}
	return (m.LenMin == nil || n >= *m.LenMin) && (m.LenMax == nil || n <= *m.LenMax)
}

func equal(v reflect.Value, want any) bool {
	switch v.Kind() {
	case reflect.Bool:
		b, ok := want.(bool)
		return ok && v.Bool() == b
	case reflect.Int, reflect.Int32, reflect.Int64:
		n, ok := want.(int)
		return ok && v.Int() == int64(n)
	case reflect.String:
		s, ok := want.(string)
		return ok && v.String() == s
	}
	return false
}

func (c Check) names() []string {
	switch c.kind {
	case "conditional":
		return []string{c.ifField, c.thenField}
	case "conditional_at_least_one_of":
		return append(append([]string{c.ifField}, c.thenAny...), c.elseThenAny...)
	}
	return c.fields
}

func quotedList(names []string) string { return "'" + strings.Join(names, "', '") + "'" }

func (c Check) eval(v reflect.Value, fs []field) error {
	lookup := func(name string) (reflect.Value, field) {
		for _, f := range fs {
			if f.name == name {
				return v.FieldByIndex(f.index), f
			}
		}
		panic(fmt.Sprintf("config: entity check names unknown field %q", name))
	}
	for _, name := range c.names() {
		if fv, f := lookup(name); f.secret && IsReference(fv.String()) {
			return nil // as Kong: not known until it is resolved
		}
	}
	set := 0
	for _, name := range c.fields {
		if fv, _ := lookup(name); nonEmpty(fv) {
			set++
		}
	}
	list := quotedList(c.fields)
	switch c.kind {
	case "at_least_one_of":
		if set == 0 {
			return fmt.Errorf("at least one of these fields must be non-empty: %s", list)
		}
	case "only_one_of":
		if set != 1 {
			return fmt.Errorf("exactly one of these fields must be non-empty: %s", list)
		}
	case "mutually_exclusive":
		if set > 1 {
			return fmt.Errorf("only one or none of these fields must be set: %s", list)
		}
	case "mutually_required":
		if set != 0 && set != len(c.fields) {
			return fmt.Errorf("all or none of these fields must be set: %s", list)
		}
	case "conditional":
		ifv, _ := lookup(c.ifField)
		if !c.ifMatch.ok(ifv) {
			return nil
		}
		thenv, _ := lookup(c.thenField)
		if c.thenMatch.ok(thenv) {
			return nil
		}
		if c.thenErr != "" {
			return fmt.Errorf("%s: %s", c.thenField, format(c.thenErr, c.ifField))
		}
		if c.thenMatch.Required && null(thenv) {
			return fmt.Errorf("%s: required field missing (because %s is %v)", c.thenField, c.ifField, ifv.Interface())
		}
		return fmt.Errorf("%s: failed conditional validation given value of field '%s' (%v): want %s", c.thenField, c.ifField, ifv.Interface(), c.thenMatch)
	case "conditional_at_least_one_of":
		ifv, _ := lookup(c.ifField)
		names, custom := c.thenAny, c.thenErr
		if !c.ifMatch.ok(ifv) {
			if c.elseMatch == nil || !c.elseMatch.ok(ifv) {
				return nil
			}
			names, custom = c.elseThenAny, c.elseErr
		}
		for _, name := range names {
			if fv, _ := lookup(name); nonEmpty(fv) {
				return nil
			}
		}
		if custom != "" {
			return fmt.Errorf("%s: %s", c.ifField, format(custom, quotedList(names)))
		}
		return fmt.Errorf("at least one of these fields must be non-empty: %s (because %s is %v)", quotedList(names), c.ifField, ifv.Interface())
	}
	return nil
}

// format is Lua's string.format as Kong applies it to a custom message:
// an argument without a %s to take it is dropped.
func format(msg, arg string) string {
	if strings.Contains(msg, "%s") {
		return fmt.Sprintf(msg, arg)
	}
	return msg
}
