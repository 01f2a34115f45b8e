package config

import (
	"encoding/json"
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
		"config: only one or none of these fields must be set: 'secret', 'secret_file'",
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
