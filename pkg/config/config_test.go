package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type inner struct {
	Addr    []string `json:"addr" kong:"required,len_min=1" doc:"Addresses to connect to."`
	Timeout int      `json:"timeout_ms" default:"200" kong:"gt=0"`
}

type sample struct {
	Name    string            `json:"name" default:"$sample_name" kong:"len_min=1"`
	Mode    string            `json:"mode" default:"fast" kong:"one_of=fast|safe"`
	Leeway  int               `json:"leeway" default:"30" kong:"between=0|600"`
	Secret  string            `json:"secret" kong:"referenceable"`
	File    string            `json:"secret_file"`
	Headers map[string]string `json:"headers" default:"{\"X-A\":\"a\"}"`
	Inner   inner             `json:"inner" kong:"required"`
	embedded
}

type embedded struct {
	Leeway int  `json:"leeway" default:"5"` // shadowed by sample.Leeway
	Flag   bool `json:"flag" default:"true"`
}

func (sample) EntityChecks() []Check { return []Check{MutuallyExclusive("secret", "secret_file")} }

var _ = Define("sample_name", "from-define")

func TestDefaultsAndFillZero(t *testing.T) {
	var s sample
	Defaults(&s)
	if s.Name != "from-define" || s.Mode != "fast" || s.Leeway != 30 || s.Headers["X-A"] != "a" || s.Inner.Timeout != 200 || !s.Flag || s.embedded.Leeway != 0 {
		t.Fatalf("defaults: %+v", s)
	}
	z := sample{Leeway: 0}
	FillZero(&z)
	if z.Leeway != 0 || z.Inner.Timeout != 200 || z.Mode != "fast" || z.Headers == nil {
		t.Fatalf("FillZero must keep an allowed zero and fill forbidden ones: %+v", z)
	}
}

func TestDecodeReplacesMapsAndReportsEveryProblem(t *testing.T) {
	var s sample
	Defaults(&s)
	err := Decode([]byte(`{"route_id":"r","mode":"slow","leeway":601,"headers":{"X-B":"b"},"secret":"{vault://env/X}","secret_file":"/f","inner":{"timeout_ms":0}}`), &s)
	if _, kept := s.Headers["X-A"]; kept || s.Headers["X-B"] != "b" {
		t.Errorf("a given map must replace the default one: %v", s.Headers)
	}
	for _, want := range []string{
		"config.mode: expected one of: fast, safe",
		"config.leeway: value should be between 0 and 600",
		"config.secret: the vault reference was not resolved",
		"config.inner.addr: required field missing",
		"config.inner.timeout_ms: value must be greater than 0",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

func TestSchemaCarriesTheDeclaration(t *testing.T) {
	b, _ := json.Marshal(Schema(sample{}))
	for _, want := range []string{
		`"required":true`, `{"leeway":{"between":[0,600],"default":30,"type":"integer"}}`,
		`"one_of":["fast","safe"]`, `{"secret":{"referenceable":true,"type":"string"}}`,
		`"entity_checks":[{"mutually_exclusive":["secret","secret_file"]}]`,
		`"gt":0`, `"len_min":1`, `"default":"from-define"`, `{"flag":{"default":true,"type":"boolean"}}`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("schema lacks %s:\n%s", want, b)
		}
	}
	if strings.Count(string(b), `"leeway"`) != 1 {
		t.Errorf("a shadowed field must appear once: %s", b)
	}
	if tbl := Table(sample{}); !strings.Contains(tbl, "| `inner.timeout_ms` | integer | `200` | > 0 |") {
		t.Errorf("table:\n%s", tbl)
	}
}

func TestSecretSources(t *testing.T) {
	dir := t.TempDir()
	good, empty := filepath.Join(dir, "good"), filepath.Join(dir, "empty")
	_ = os.WriteFile(good, []byte("s3cret\n"), 0o600)
	_ = os.WriteFile(empty, []byte("\n"), 0o600)
	t.Setenv("SUBGATE_CONFIG_TEST", "from-env")
	for _, tc := range []struct {
		s          Secret
		want, fail string
	}{
		{Secret{Field: "p", Value: "v"}, "v", ""},
		{Secret{Field: "p", File: good}, "s3cret", ""},
		{Secret{Field: "p", Env: "SUBGATE_CONFIG_TEST"}, "from-env", ""},
		{Secret{Field: "p"}, "", "p: no secret"},
		{Secret{Field: "p", Value: "v", File: good}, "", "set only one of"},
		{Secret{Field: "p", Value: "{vault://env/X}", Env: "SUBGATE_CONFIG_TEST"}, "", "a vault reference and p_file or p_env"},
		{Secret{Field: "p", File: empty}, "", "p_file: " + empty + " is empty"},
		{Secret{Field: "p", File: filepath.Join(dir, "none")}, "", "p_file: cannot read"},
		{Secret{Field: "p", Env: "SUBGATE_CONFIG_UNSET"}, "", "nginx clears the environment"},
	} {
		got, err := tc.s.Read()
		if tc.fail == "" && (err != nil || got != tc.want) {
			t.Errorf("%+v: %q, %v", tc.s, got, err)
		}
		if tc.fail != "" && (err == nil || !strings.Contains(err.Error(), tc.fail) || strings.Contains(err.Error(), "s3cret")) {
			t.Errorf("%+v: err %v, want %q", tc.s, err, tc.fail)
		}
	}
}

type withOptional struct {
	Must  inner  `json:"must" doc:"A record Kong makes required."`
	Maybe *inner `json:"maybe" doc:"A record a route may omit."`
	Decisions
}

func TestOptionalRecord(t *testing.T) {
	b, _ := json.Marshal(Schema(withOptional{}))
	for _, want := range []string{
		`{"maybe":{"description":"A record a route may omit.","fields":[`,
		`"required":false,"type":"record"}}`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("schema lacks %s:\n%s", want, b)
		}
	}
	if strings.Count(string(b), `"required":false`) != 1 {
		t.Errorf("only the optional record says required false: %s", b)
	}
	if tbl := Table(withOptional{}); !strings.Contains(tbl, "| `maybe` | record |  | optional |") || !strings.Contains(tbl, "| `maybe.timeout_ms` | integer | `200` |") {
		t.Errorf("table:\n%s", tbl)
	}

	var c withOptional
	Defaults(&c)
	if c.Maybe != nil || c.Must.Timeout != 200 {
		t.Fatalf("Defaults must fill the required record and leave the optional one absent: %+v", c)
	}
	FillZero(&c)
	if c.Maybe != nil {
		t.Fatal("FillZero must leave an absent optional record absent")
	}
	// Absent and null: nil, and its fields are not validated.
	for _, raw := range []string{`{"must":{"addr":["a"]}}`, `{"must":{"addr":["a"]},"maybe":null}`} {
		var c withOptional
		Defaults(&c)
		if err := Decode([]byte(raw), &c); err != nil || c.Maybe != nil {
			t.Errorf("%s: %v, maybe %+v", raw, err, c.Maybe)
		}
	}
	// Given: it starts from its defaults and is validated.
	var g withOptional
	Defaults(&g)
	if err := Decode([]byte(`{"must":{"addr":["a"]},"maybe":{"addr":["b"]}}`), &g); err != nil || g.Maybe == nil || g.Maybe.Timeout != 200 || g.Maybe.Addr[0] != "b" {
		t.Fatalf("given optional record: %v %+v", err, g.Maybe)
	}
	var bad withOptional
	Defaults(&bad)
	err := Decode([]byte(`{"must":{"addr":["a"]},"maybe":{"timeout_ms":0}}`), &bad)
	for _, want := range []string{"config.maybe.addr: required field missing", "config.maybe.timeout_ms: value must be greater than 0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

var _ = Pattern("test_host_port", "^[^%s/]+:%d+$", "expected host:port")

type ruled struct {
	Mode    string            `json:"mode" default:"a" kong:"one_of=a|b"`
	Addrs   []string          `json:"addrs" elements:"match=$test_host_port"`
	Path    string            `json:"path" kong:"starts_with=/"`
	Names   map[string]string `json:"names" keys:"match=$test_host_port" values:"len_min=2"`
	Secret  string            `json:"secret" kong:"referenceable"`
	File    string            `json:"secret_file"`
	Cluster bool              `json:"cluster" default:"false"`
	Master  string            `json:"master"`
	List    []string          `json:"list"`
	Other   []string          `json:"other"`
}

func (ruled) EntityChecks() []Check {
	return []Check{
		MutuallyExclusive("secret", "secret_file"),
		AtLeastOneOf("list", "other"),
		Conditional("mode", Match{Eq: "b"}, "secret", Match{LenMin: N(8)}, "a secret of 8 bytes or more when %s is b"),
		Conditional("cluster", Match{Eq: true}, "master", Match{LenMax: N(0)}, ""),
		ConditionalAtLeastOneOf("mode", Match{OneOf: []string{"a"}}, []string{"secret", "secret_file"}, "", &Match{OneOf: []string{"b"}}, []string{"master"}, "mode b takes %s"),
	}
}

// Check: a rule the schema cannot say.
func (r ruled) Check() error {
	if r.Path == "/forbidden" {
		return errors.New("path: /forbidden is forbidden")
	}
	return nil
}

// The rules Kong checks at load, as Go checks them at start and in
// -check: Kong's is_nonempty ([] is not set), a reference skipping every
// check that reads it, patterns, conditional checks, a Checker after them.
func TestRulesAsKongHasThem(t *testing.T) {
	for _, c := range []struct {
		raw, want  string
		unresolved bool
	}{
		{`{"list":["x"],"secret":"s"}`, "", false},
		{`{"list":[],"secret":"s"}`, "at least one of these fields must be non-empty: 'list', 'other'", false},
		{`{"list":["x"],"secret":"s","secret_file":"f"}`, "only one or none of these fields must be set: 'secret', 'secret_file'", false},
		{`{"list":["x"],"secret":"{vault://env/X}","secret_file":"f"}`, "config.secret: the vault reference was not resolved", false},
		{`{"list":["x"],"secret":"{vault://env/X}","secret_file":"f"}`, "", true}, // as Kong: the check skips a reference
		{`{"list":["x"],"secret":"s","addrs":["h:1","h"]}`, "config.addrs[2]: expected host:port", false},
		{`{"list":["x"],"secret":"s","path":"x"}`, "config.path: should start with: /", false},
		{`{"list":["x"],"secret":"s","names":{"h":"vv"}}`, `config.names key "h": expected host:port`, false},
		{`{"list":["x"],"secret":"s","names":{"h:1":"v"}}`, "config.names.h:1: length must be at least 2", false},
		{`{"list":["x"],"mode":"b","secret":"short","master":"m"}`, "secret: a secret of 8 bytes or more when mode is b", false},
		{`{"list":["x"],"mode":"b","secret":"{vault://env/X}","master":"m"}`, "", true},
		{`{"list":["x"],"secret":"s","cluster":true,"master":"m"}`, "master: failed conditional validation given value of field 'cluster'", false},
		{`{"list":["x"]}`, "at least one of these fields must be non-empty: 'secret', 'secret_file' (because mode is a)", false},
		{`{"list":["x"],"mode":"b","secret":"12345678"}`, "config: mode: mode b takes 'master'", false},
		{`{"list":["x"],"secret":"s","path":"/forbidden"}`, "config: path: /forbidden is forbidden", false},
		{`{"list":["x"],"secret":"s","path":"/forbidden","addrs":["h"]}`, "config.addrs[1]: expected host:port", false}, // no Check on a record with errors
	} {
		var r ruled
		Defaults(&r)
		var err error
		if c.unresolved {
			err = DecodeUnresolved([]byte(c.raw), &r)
		} else {
			err = Decode([]byte(c.raw), &r)
		}
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.raw, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want %q", c.raw, err, c.want)
		case strings.Contains(c.raw, `"addrs":["h"]`) && strings.Contains(fmt.Sprint(err), "forbidden"):
			t.Errorf("%s: Check ran on a record with errors", c.raw)
		}
	}
	b, _ := json.Marshal(Schema(ruled{}))
	for _, want := range []string{
		`"elements":{"err":"expected host:port","match":"^[^%s/]+:%d+$","type":"string"}`,
		`"keys":{"err":"expected host:port","match":"^[^%s/]+:%d+$","type":"string"}`, `"values":{"len_min":2,"type":"string"}`,
		`"starts_with":"/"`,
		`{"conditional":{"if_field":"mode","if_match":{"eq":"b"},"then_err":"a secret of 8 bytes or more when %s is b","then_field":"secret","then_match":{"len_min":8}}}`,
		`{"conditional_at_least_one_of":{"else_match":{"one_of":["b"]},"else_then_at_least_one_of":["master"],"else_then_err":"mode b takes %s","if_field":"mode","if_match":{"one_of":["a"]},"then_at_least_one_of":["secret","secret_file"]}}`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("schema lacks %s:\n%s", want, b)
		}
	}
}
