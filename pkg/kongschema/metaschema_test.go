package kongschema

import (
	"strings"
	"testing"
)

// The rules come from Kong 3.9's kong/db/schema/metaschema.lua
// (MetaSubSchema, field_schema, attribute_types, required_attributes,
// `default = { type = "self" }`, entity_checks_schema) and
// kong/db/schema/plugin_loader.lua / entity.lua (new_subschema); rules
// marked (subgate) are this project's, where Kong accepts a schema that
// then misbehaves.

func schemaWith(configFields string, extra string) string {
	return `{"name":"p","fields":[{"config":{"type":"record","fields":[` + configFields + `]}}]` + extra + `}`
}

func TestMetaschemaAcceptsGoodSchemas(t *testing.T) {
	for _, raw := range []string{
		testSchema,
		schemaWith(`{"a":{"type":"string"}}`, ""),
		schemaWith(`{"r":{"type":"record","fields":[{"x":{"type":"integer","default":3,"between":[1,5]}}],
			"entity_checks":[{"at_least_one_of":["x"]}]}},
			{"s":{"type":"set","elements":{"type":"string","one_of":["a","b"]},"default":["a"]}},
			{"m":{"type":"map","keys":{"type":"string"},"values":{"type":"integer","gt":0},"default":{"k":1}}},
			{"e":{"type":"string","default":"","len_min":0,"description":"an optional string"}}`, ""),
	} {
		if err := CheckMetaschemaJSON([]byte(raw)); err != nil {
			t.Errorf("refused: %v\n%s", err, raw)
		}
	}
}

func TestMetaschemaRefusesBadSchemas(t *testing.T) {
	for _, c := range []struct{ raw, want string }{
		{`{"fields":[{"config":{"type":"record","fields":[]}}]}`, "name: required field missing"},
		{`{"name":"p"}`, "fields: 'fields' must be a table"},
		{schemaWith(`{"a":{"type":"string"}}`, `,"colour":"red"`), "colour: unknown field"},
		{schemaWith(`{"a":{"type":"text"}}`, ""), "config.a.type: expected one of: array, boolean"},
		{schemaWith(`{"a":{"required":true}}`, ""), "config.a: missing type declaration"},
		{schemaWith(`{"a":{"type":"string","requird":true}}`, ""), "config.a.requird: unknown field"},
		{schemaWith(`{"a":{"type":"string","required":"yes"}}`, ""), "config.a.required: expected a boolean"},
		{schemaWith(`{"a":{"type":"string","between":[1,2]}}`, ""), "config.a: field of type 'string' cannot have attribute 'between'"},
		{schemaWith(`{"a":{"type":"boolean","one_of":[true]}}`, ""), "config.a: field of type 'boolean' cannot have attribute 'one_of'"},
		{schemaWith(`{"a":{"type":"integer","between":[1]}}`, ""), "config.a.between: length must be 2"},
		{schemaWith(`{"a":{"type":"integer","gt":"0"}}`, ""), "config.a.gt: expected a number"},
		{schemaWith(`{"a":{"type":"string","len_min":1.5}}`, ""), "config.a.len_min: expected an integer"},
		{schemaWith(`{"a":{"type":"array"}}`, ""), "config.a: field of type 'array' must declare 'elements'"},
		{schemaWith(`{"a":{"type":"map","keys":{"type":"string"}}}`, ""), "config.a: field of type 'map' must declare 'values'"},
		{schemaWith(`{"a":{"type":"record"}}`, ""), "config.a: field of type 'record' must declare 'fields'"},
		{schemaWith(`{"a":{"type":"array","elements":{"type":"strin"}}}`, ""), "config.a.elements.type: expected one of"},
		{schemaWith(`{"a":{"type":"integer","default":"30"}}`, ""), "config.a.default: expected an integer"},
		{schemaWith(`{"a":{"type":"integer","default":900,"between":[0,600]}}`, ""), "config.a.default: value should be between 0 and 600"},
		{schemaWith(`{"a":{"type":"string","default":"HS512","one_of":["ES256"]}}`, ""), "config.a.default: expected one of: ES256"},
		{schemaWith(`{"a":{"type":"string","default":""}}`, ""), "config.a.default: length must be at least 1"},
		{schemaWith(`{"a":{"type":"array","elements":{"type":"string"},"default":["x",1]}}`, ""), "config.a.default[1]: expected a string"},
		{schemaWith(`{"a":{"type":"string","description":"short"}}`, ""), "config.a.description: length must be between 10 and 500"},
		{schemaWith(`{"a":{"type":"integer","referenceable":true}}`, ""), "config.a: referenceable is only honoured on string fields, not integer (subgate)"},
		{schemaWith(`{"a":{"type":"string","match":"%b()"}}`, ""), "config.a.match: pattern \"%b()\" (a Lua pattern)"},
		{schemaWith(`{"a":{"type":"string"}}`, `,"entity_checks":[{"at_least_one_of":["config.b"]}]`), `entity_checks[0].at_least_one_of: no field "config.b" in this record (subgate)`},
		{schemaWith(`{"r":{"type":"record","fields":[{"x":{"type":"string"}}],"entity_checks":[{"only_one_of":["x","y"]}]}}`, ""), `config.r.entity_checks[0].only_one_of: no field "y"`},
		{schemaWith(`{"a":{"type":"string"}}`, `,"entity_checks":[{"one_of_these":["config.a"]}]`), "entity_checks[0].one_of_these: unknown field"},
		{schemaWith(`{"a":{"type":"string"}}`, `,"entity_checks":[{"at_least_one_of":["config.a"],"only_one_of":["config.a"]}]`), "entity_checks[0]: exactly one of these fields must be non-empty"},
		{schemaWith(`{"a":{"type":"string"}}`, `,"entity_checks":[{"at_least_one_of":"config.a"}]`), "entity_checks[0].at_least_one_of: expected an array"},
		{schemaWith(`{"a":{"type":"string"}}`, `,"entity_checks":[{"conditional":{"if_field":"config.a","if_match":{"colour":1},"then_field":"config.a","then_match":{"required":true}}}]`), "entity_checks[0].conditional.if_match.colour: unknown field"},
		{`{"name":"p","fields":[{"config":{"type":"record","fields":[]}},{"secret":{"type":"string"}}]}`, "secret: error in definition of 'p': secret: cannot create a new field"},
		{`{"name":"p","fields":[{"config":{"type":"map","keys":{"type":"string"},"values":{"type":"string"}}}]}`, "config: error in definition of 'p': config: cannot change type in a specialized field"},
	} {
		err := CheckMetaschemaJSON([]byte(c.raw))
		if err == nil {
			t.Errorf("accepted, want %q:\n%s", c.want, c.raw)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v\nwant %q", err, c.want)
		}
	}
}
