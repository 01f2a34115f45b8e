package kongschema

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// testSchema has one field or check per rule; the shape is what -dump prints.
const testSchema = `{"name":"p","fields":[{"config":{"type":"record","fields":[
	{"leeway_seconds":{"type":"integer","between":[0,600],"default":30}},
	{"jwks_url":{"type":"string","match":"^https?://"}},
	{"keys":{"type":"array","elements":{"type":"record","fields":[
		{"kid":{"type":"string","required":true}},
		{"algorithm":{"type":"string","required":true,"one_of":["ES256","EdDSA","RS256","HS256"]}},
		{"secret":{"type":"string","referenceable":true,"len_min":32}}]}}},
	{"timeout_ms":{"type":"integer","gt":0,"default":250}},
	{"ratio":{"type":"number"}},
	{"issuers":{"type":"set","elements":{"type":"string"},"len_min":1}},
	{"headers":{"type":"map","keys":{"type":"string","match":"^[%w-]+$"},"values":{"type":"string"}}},
	{"redis":{"type":"record","fields":[
		{"host":{"type":"string","default":"localhost"}},
		{"password":{"type":"string","referenceable":true}},
		{"password_file":{"type":"string"}}],
		"entity_checks":[{"mutually_exclusive":["password","password_file"]}]}},
	{"mode":{"type":"string","one_of":["local","remote"],"default":"local"}},
	{"endpoint":{"type":"string"}},
	{"cert":{"type":"string"}},{"cert_key":{"type":"string"}},
	{"a":{"type":"string"}},{"b":{"type":"string"}},
	{"hide":{"type":"boolean"}}],
	"entity_checks":[{"at_least_one_of":["jwks_url","keys"]}]}}],
"entity_checks":[
	{"conditional":{"if_field":"config.mode","if_match":{"one_of":["remote"]},"then_field":"config.endpoint","then_match":{"required":true}}},
	{"mutually_required":["config.cert","config.cert_key"]},
	{"only_one_of":["config.a","config.b"]}]}`

func parseTest(t *testing.T, raw string) *Schema {
	t.Helper()
	s, err := ParseSchema([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func jsonMap(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// ok is a config that passes every rule; each case below breaks one.
const okConfig = `{"jwks_url":"https://id/jwks","a":"x"}`

func TestValidateAsKong(t *testing.T) {
	s := parseTest(t, testSchema)
	if _, errs := s.Validate(jsonMap(t, okConfig)); len(errs) > 0 {
		t.Fatalf("good config refused: %v", errs)
	}
	for _, c := range []struct{ config, want string }{
		{`{"jwks_url":"https://x","a":"x","leway_seconds":3}`, "config.leway_seconds: unknown field"},
		{`{"jwks_url":"https://x","a":"x","leeway_seconds":"3"}`, "config.leeway_seconds: expected an integer"},
		{`{"jwks_url":"https://x","a":"x","leeway_seconds":1.5}`, "config.leeway_seconds: expected an integer"},
		{`{"jwks_url":"https://x","a":"x","ratio":"1"}`, "config.ratio: expected a number"},
		{`{"jwks_url":"https://x","a":"x","hide":"yes"}`, "config.hide: expected a boolean"},
		{`{"jwks_url":"https://x","a":"x","leeway_seconds":601}`, "config.leeway_seconds: value should be between 0 and 600"},
		{`{"jwks_url":"https://x","a":"x","timeout_ms":0}`, "config.timeout_ms: value must be greater than 0"},
		{`{"jwks_url":"ftp://x","a":"x"}`, "config.jwks_url: invalid value: ftp://x"},
		{`{"jwks_url":"","a":"x"}`, "config.jwks_url: length must be at least 1"},
		{`{"a":"x","keys":[{"kid":"k","algorithm":"none"}]}`, "config.keys[0].algorithm: expected one of: ES256, EdDSA, RS256, HS256"},
		{`{"a":"x","keys":[{"algorithm":"ES256"}]}`, "config.keys[0].kid: required field missing"},
		{`{"a":"x","keys":[{"kid":"k","algorithm":"HS256","secret":"short"}]}`, "config.keys[0].secret: length must be at least 32"},
		{`{"a":"x","keys":[null]}`, "config.keys[0]: required field missing"},
		{`{"a":"x","keys":{"kid":"k"}}`, "config.keys: expected an array"},
		{`{"jwks_url":"https://x","a":"x","issuers":[]}`, "config.issuers: length must be at least 1"},
		{`{"jwks_url":"https://x","a":"x","issuers":["a",1]}`, "config.issuers[1]: expected a string"},
		{`{"jwks_url":"https://x","a":"x","headers":{"bad key":"v"}}`, "config.headers.bad key: key: invalid value: bad key"},
		{`{"jwks_url":"https://x","a":"x","headers":{"X-A":1}}`, "config.headers.X-A: expected a string"},
		{`{"jwks_url":"https://x","a":"x","redis":{"host":7}}`, "config.redis.host: expected a string"},
		{`{"jwks_url":"https://x","a":"x","redis":null}`, "config.redis: required field missing"},
		{`{"jwks_url":"https://x","a":"x","redis":{"password":"p","password_file":"/f"}}`,
			"config.redis: only one or none of these fields must be set: 'password', 'password_file'"},
		{`{"a":"x"}`, "config: at least one of these fields must be non-empty: 'jwks_url', 'keys'"},
		{`{"a":"x","keys":[]}`, "config: at least one of these fields must be non-empty: 'jwks_url', 'keys'"},
		{`{"jwks_url":"https://x","a":"x","mode":"remote"}`, "config.endpoint: required field missing"},
		{`{"jwks_url":"https://x","a":"x","mode":"remote"}`, "failed conditional validation given value of field 'config.mode'"},
		{`{"jwks_url":"https://x","a":"x","cert":"c"}`, "all or none of these fields must be set: 'config.cert', 'config.cert_key'"},
		{`{"jwks_url":"https://x"}`, "exactly one of these fields must be non-empty: 'config.a', 'config.b'"},
		{`{"jwks_url":"https://x","a":"x","b":"y"}`, "exactly one of these fields must be non-empty: 'config.a', 'config.b'"},
	} {
		_, errs := s.Validate(jsonMap(t, c.config))
		found := false
		for _, e := range errs {
			found = found || e.Error() == c.want
		}
		if !found {
			t.Errorf("%s: got %v, want %q among them", c.config, errs, c.want)
		}
	}
}

func TestValidateReportsEveryError(t *testing.T) {
	s := parseTest(t, testSchema)
	_, errs := s.Validate(jsonMap(t, `{"zz":1,"leeway_seconds":-1,"timeout_ms":0,"keys":[{"kid":"k","algorithm":"x"},{"algorithm":"RS256"}]}`))
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	want := []string{
		"config.leeway_seconds: value should be between 0 and 600",
		"config.keys[0].algorithm: expected one of: ES256, EdDSA, RS256, HS256",
		"config.keys[1].kid: required field missing",
		"config.timeout_ms: value must be greater than 0",
		"config.zz: unknown field",
		"exactly one of these fields must be non-empty: 'config.a', 'config.b'",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors\n got %q\nwant %q", got, want)
	}
}

func TestDefaultsAndReferencesAsKong(t *testing.T) {
	s := parseTest(t, testSchema)
	given := jsonMap(t, `{"keys":[{"kid":"k","algorithm":"HS256","secret":"{vault://env/jwt-secret}"}],"a":"x",
		"redis":{"password":"{vault://env/redis/pass?prefix=app_}"},"issuers":["i","i"]}`)
	config, errs := s.Validate(given)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	// "insert" processing: defaults, null for the rest, sets deduplicated.
	if config["leeway_seconds"] != 30.0 || config["mode"] != "local" || config["jwks_url"] != nil {
		t.Errorf("defaults: %v", config)
	}
	if _, ok := config["jwks_url"]; !ok {
		t.Error("an unset field without default must be null after insert processing")
	}
	if !reflect.DeepEqual(config["issuers"], []any{"i"}) {
		t.Errorf("set not deduplicated: %v", config["issuers"])
	}
	env := map[string]string{"JWT_SECRET": strings.Repeat("s", 32), "APP_REDIS": `{"pass":"pw"}`}
	out, warns := Select(s.Entity.Field("config"), config, env)
	if len(warns) > 0 {
		t.Errorf("warnings: %v", warns)
	}
	if _, ok := out["jwks_url"]; ok {
		t.Error("the plugins iterator reads configs without nulls: jwks_url must be absent")
	}
	key := out["keys"].([]any)[0].(map[string]any)
	if key["secret"] != env["JWT_SECRET"] || key["$refs"].(map[string]any)["secret"] != "{vault://env/jwt-secret}" {
		t.Errorf("key not resolved: %v", key)
	}
	redis := out["redis"].(map[string]any)
	if redis["password"] != "pw" || redis["host"] != "localhost" {
		t.Errorf("redis: %v", redis)
	}
	// A missing variable resolves to "" with a warning, as Kong logs it.
	out, warns = Select(s.Entity.Field("config"), config, nil)
	if out["redis"].(map[string]any)["password"] != "" || len(warns) != 2 {
		t.Errorf("missing variables: %v %v", out["redis"], warns)
	}
}

func TestReferencesSkipValidatorsAndChecks(t *testing.T) {
	s := parseTest(t, testSchema)
	// A reference is shorter than len_min 32, and both redis secrets set
	// would break mutually_exclusive: Kong runs neither on a reference.
	_, errs := s.Validate(jsonMap(t, `{"a":"x","keys":[{"kid":"k","algorithm":"HS256","secret":"{vault://env/s}"}],
		"redis":{"password":"{vault://env/p}","password_file":"/f"}}`))
	if len(errs) > 0 {
		t.Errorf("refused: %v", errs)
	}
	// Kong accepts a reference in a field that is not referenceable (it is a
	// string); CheckReferences refuses it, and malformed references.
	_, errs = s.Validate(jsonMap(t, `{"jwks_url":"https://x","a":"{vault://env/x}"}`))
	if len(errs) > 0 {
		t.Errorf("Kong accepts this: %v", errs)
	}
	for cfg, want := range map[string]string{
		`{"a":"{vault://env/x}"}`:                               "config.a: vault reference in a field that is not referenceable",
		`{"redis":{"password":"{vault://env}"}}`:                "config.redis.password: bad vault reference: reference url is missing path",
		`{"redis":{"password":"{vault://aws/p}"}}`:              `config.redis.password: bad vault reference: vault "aws" is not configured`,
		`{"keys":[{"kid":"k","secret":"{vault://env/s#x}"}]}`:   "config.keys[0].secret: bad vault reference: reference url has invalid version",
		`{"headers":{"X":"{vault://env/x}"},"zz":"{vault:/x}"}`: "config.headers.X: vault reference in a field that is not referenceable",
	} {
		errs := CheckReferences(s.Entity, map[string]any{"config": jsonMap(t, cfg)}, nil)
		if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), want) {
			t.Errorf("%s: got %v, want %q", cfg, errs, want)
		}
	}
}

func TestLuaPattern(t *testing.T) {
	for _, c := range []struct {
		pattern, s string
		match      bool
	}{
		{"^https?://", "http://a", true}, {"^https?://", "ftp://a", false},
		{"^[%w-]+$", "X-Auth", true}, {"^[%w-]+$", "a b", false},
		{"^%d+%.%d+$", "1.5", true}, {"^%d+%.%d+$", "1x5", false},
		{"^[^/]+$", "ab", true}, {"^[^/]+$", "a/b", false},
		{"a.-b", "axxb", true}, {"%s", "nospace", false}, {"^%u%l*$", "Kong", true},
	} {
		re, err := luaPattern(c.pattern)
		if err != nil {
			t.Fatalf("%s: %v", c.pattern, err)
		}
		if re.MatchString(c.s) != c.match {
			t.Errorf("%q ~ %q: want %v", c.pattern, c.s, c.match)
		}
	}
	if _, err := luaPattern("%b()"); err == nil {
		t.Error("balanced match accepted")
	}
}

// A record Kong makes required (no required attribute: make_records_required)
// is expanded with its defaults when absent; one with required false (an
// optional section, pkg/config's pointer-to-struct) stays null, and is
// validated only when given.
func TestOptionalRecordAsKong(t *testing.T) {
	s := parseTest(t, `{"name":"p","fields":[{"config":{"type":"record","fields":[
		{"jwt":{"type":"record","fields":[{"header":{"type":"string","default":"Authorization"}}]}},
		{"identity":{"type":"record","required":false,"fields":[
			{"url":{"type":"string","required":true}},{"method":{"type":"string","default":"GET"}}]}}]}}]}`)
	config, errs := s.Validate(jsonMap(t, `{}`))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if jwt, _ := config["jwt"].(map[string]any); jwt["header"] != "Authorization" {
		t.Errorf("a required record must be expanded with its defaults: %v", config)
	}
	if v, ok := config["identity"]; !ok || v != nil {
		t.Errorf("an absent optional record must be null: %v", config)
	}
	if out, _ := Select(s.Entity.Field("config"), config, nil); out["identity"] != nil {
		t.Errorf("the plugin must not receive an absent optional record: %v", out)
	}
	_, errs = s.Validate(jsonMap(t, `{"identity":{}}`))
	if len(errs) != 1 || !strings.Contains(errs.Error(), "config.identity.url: required field missing") {
		t.Errorf("a given optional record is validated: %v", errs)
	}
	config, errs = s.Validate(jsonMap(t, `{"identity":{"url":"http://id"}}`))
	if id, _ := config["identity"].(map[string]any); len(errs) > 0 || id["method"] != "GET" {
		t.Errorf("a given optional record gets its defaults: %v %v", config, errs)
	}
}
