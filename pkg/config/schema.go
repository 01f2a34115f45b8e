package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// Schema returns the Kong schema of the declared config struct (a value or
// pointer): a record whose fields carry Kong's attributes, as -dump prints
// it under "config".
func Schema(decl any) map[string]any {
	t := reflect.TypeOf(decl)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	s := record(t, fields(t))
	s["required"] = true // Kong requires a plugin's config record
	return s
}

func record(t reflect.Type, fs []field) map[string]any {
	list := make([]map[string]any, 0, len(fs))
	for _, f := range fs {
		list = append(list, map[string]any{f.name: fieldSchema(f)})
	}
	s := map[string]any{"type": "record", "fields": list}
	if ec, ok := reflect.New(t).Interface().(EntityChecker); ok {
		s["entity_checks"] = ec.EntityChecks()
	}
	return s
}

func fieldSchema(f field) map[string]any {
	s := map[string]any{"type": f.kongType}
	switch f.kongType {
	case "record":
		s = record(f.typ, f.recordOf)
	case "array":
		s["elements"] = fieldSchema(*f.elemField)
	case "map":
		s["keys"] = map[string]any{"type": "string"}
		if f.keyField != nil {
			s["keys"] = fieldSchema(*f.keyField)
		}
		s["values"] = fieldSchema(*f.elemField)
	}
	if f.required {
		s["required"] = true
	}
	if f.optional {
		// Kong's Entity.new_subschema makes every record required unless it
		// says otherwise (make_records_required), and expands a missing
		// required record with its defaults; required false leaves an
		// absent one null (handle_missing_field).
		s["required"] = false
	}
	if f.hasDef {
		s["default"] = defaultValue(f)
	}
	if f.secret {
		s["referenceable"] = true
	}
	if f.oneOf != nil {
		vals := make([]any, len(f.oneOf))
		for i, o := range f.oneOf {
			vals[i] = scalar(f, o)
		}
		s["one_of"] = vals
	}
	if f.between != nil {
		s["between"] = []float64{f.between[0], f.between[1]}
	}
	if f.gt != nil {
		s["gt"] = *f.gt
	}
	if f.lenMin != nil {
		s["len_min"] = *f.lenMin
	}
	if f.lenMax != nil {
		s["len_max"] = *f.lenMax
	}
	if f.startsW != "" {
		s["starts_with"] = f.startsW
	}
	if f.match != nil {
		s["match"] = f.match.lua
		if f.match.err != "" {
			s["err"] = f.match.err // Kong gives it for every validator of the field
		}
	}
	if f.doc != "" {
		s["description"] = f.doc
	}
	return s
}

// defaultValue is the default as the JSON value Kong fills in.
func defaultValue(f field) any {
	v := reflect.New(f.typ)
	_ = setDefault(v.Elem(), f.def)
	return v.Elem().Interface()
}

func scalar(f field, s string) any {
	if f.kongType == "string" {
		return s
	}
	var n json.Number = json.Number(s)
	return n
}

// Table renders the declaration as the README's config table.
func Table(decl any) string {
	t := reflect.TypeOf(decl)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var b strings.Builder
	b.WriteString("| field | type | default | rules | description |\n| --- | --- | --- | --- | --- |\n")
	var rows func(prefix string, fs []field)
	rows = func(prefix string, fs []field) {
		for _, f := range fs {
			name := prefix + f.name
			def := ""
			if f.hasDef {
				j, _ := json.Marshal(defaultValue(f))
				def = "`" + string(j) + "`"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", name, typeName(f), def, rules(f), f.doc)
			if f.recordOf != nil {
				rows(name+".", f.recordOf)
			} else if f.elemField != nil && f.elemField.recordOf != nil {
				rows(name+"[].", f.elemField.recordOf)
			}
		}
	}
	rows("", fields(t))
	if ec, ok := reflect.New(t).Interface().(EntityChecker); ok {
		for _, c := range ec.EntityChecks() {
			fmt.Fprintf(&b, "\nEntity check: %s.", c)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func typeName(f field) string {
	switch f.kongType {
	case "array":
		return "array of " + typeName(*f.elemField)
	case "map":
		return "map of string to " + typeName(*f.elemField)
	}
	return f.kongType
}

func rules(f field) string {
	var r []string
	if f.required {
		r = append(r, "required")
	}
	if f.optional {
		r = append(r, "optional")
	}
	if f.secret {
		r = append(r, "referenceable")
	}
	if f.oneOf != nil {
		r = append(r, "one of "+strings.Join(f.oneOf, ", "))
	}
	if f.between != nil {
		r = append(r, fmt.Sprintf("%s..%s", num(f.between[0]), num(f.between[1])))
	}
	if f.gt != nil {
		r = append(r, "> "+num(*f.gt))
	}
	if f.lenMin != nil {
		r = append(r, fmt.Sprintf("length ≥ %d", *f.lenMin))
	}
	if f.lenMax != nil {
		r = append(r, fmt.Sprintf("length ≤ %d", *f.lenMax))
	}
	if f.startsW != "" {
		r = append(r, "starts with `"+f.startsW+"`")
	}
	if f.match != nil {
		if f.match.err != "" {
			r = append(r, strings.TrimPrefix(f.match.err, "expected "))
		} else {
			r = append(r, "matches `"+strings.ReplaceAll(f.match.lua, "|", `\|`)+"`")
		}
	}
	if f.keyField != nil {
		if k := rules(*f.keyField); k != "" {
			r = append(r, "keys: "+k)
		}
	}
	if f.elemField != nil && f.elemField.recordOf == nil {
		if e := rules(*f.elemField); e != "" {
			what := "elements"
			if f.kongType == "map" {
				what = "values"
			}
			r = append(r, what+": "+e)
		}
	}
	return strings.Join(r, "; ")
}
