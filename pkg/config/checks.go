package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// Check is one Kong entity check on a record. A field counts as set when
// it is not its zero value (Kong: not null); use checks on strings, arrays
// and maps, whose zero value is what Kong sends for an absent field.
type Check struct {
	kind   string
	fields []string
	// conditional: when ifField equals ifEq, thenField is required.
	ifField   string
	ifEq      any
	thenField string
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
	return Check{kind: "conditional", ifField: ifField, ifEq: eq, thenField: thenField}
}

// MarshalJSON writes the check as Kong's schema writes it.
func (c Check) MarshalJSON() ([]byte, error) {
	if c.kind == "conditional" {
		return json.Marshal(map[string]any{"conditional": map[string]any{
			"if_field": c.ifField, "if_match": map[string]any{"eq": c.ifEq},
			"then_field": c.thenField, "then_match": map[string]any{"required": true},
		}})
	}
	return json.Marshal(map[string]any{c.kind: c.fields})
}

func (c Check) String() string {
	if c.kind == "conditional" {
		return fmt.Sprintf("`%s` required when `%s` is `%v`", c.thenField, c.ifField, c.ifEq)
	}
	return strings.ReplaceAll(c.kind, "_", " ") + ": `" + strings.Join(c.fields, "`, `") + "`"
}

func (c Check) eval(v reflect.Value, fs []field) error {
	lookup := func(name string) reflect.Value {
		for _, f := range fs {
			if f.name == name {
				return v.FieldByIndex(f.index)
			}
		}
		panic(fmt.Sprintf("config: entity check names unknown field %q", name))
	}
	set := 0
	for _, name := range c.fields {
		if !lookup(name).IsZero() {
			set++
		}
	}
	list := strings.Join(c.fields, "', '")
	switch c.kind {
	case "at_least_one_of":
		if set == 0 {
			return fmt.Errorf("at least one of these fields must be non-empty: '%s'", list)
		}
	case "only_one_of":
		if set != 1 {
			return fmt.Errorf("exactly one of these fields must be non-empty: '%s'", list)
		}
	case "mutually_exclusive":
		if set > 1 {
			return fmt.Errorf("only one or none of these fields must be set: '%s'", list)
		}
	case "mutually_required":
		if set != 0 && set != len(c.fields) {
			return fmt.Errorf("all or none of these fields must be set: '%s'", list)
		}
	case "conditional":
		if reflect.DeepEqual(lookup(c.ifField).Interface(), c.ifEq) && lookup(c.thenField).IsZero() {
			return fmt.Errorf("%s: required field missing (because %s is %v)", c.thenField, c.ifField, c.ifEq)
		}
	}
	return nil
}
