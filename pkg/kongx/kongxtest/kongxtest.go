// Package kongxtest helps plugin unit tests configure a plugin the way Kong
// does, so the tests exercise the same decoding path as production.
package kongxtest

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/Kong/go-pdk/test"
	"github.com/subgate/subgate/pkg/kongx"
)

// Plugin tests drive plugins through go-pdk's test package.
func init() { kongx.UseGoPDKTestHarness() }

// Config builds the JSON Kong sends at instance start (the schema's
// defaults filled in, records merged field by field, plus Kong's metadata)
// with set's values, and decodes it into the value newConfig returns, as
// go-pdk does. The defaults are the ones New() set: the declaration's.
func Config[T any](t testing.TB, newConfig func() any, set map[string]any) T {
	t.Helper()
	c, ok := newConfig().(T)
	if !ok {
		t.Fatalf("kongxtest: New returned %T", newConfig())
	}
	var full map[string]any
	b, err := json.Marshal(c)
	if err == nil {
		err = json.Unmarshal(b, &full)
	}
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range set {
		if _, known := full[k]; !known {
			t.Fatalf("kongxtest: %q is not a field of %s", k, reflect.TypeOf(c))
		}
		if isRecord(reflect.TypeOf(c), k) {
			v = merge(full[k], v)
		}
		full[k] = v
	}
	for k, v := range map[string]any{"route_id": "route-under-test", "__plugin_id": "plugin-under-test", "__seq__": 1} {
		full[k] = v
	}
	if b, err = json.Marshal(full); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, c); err != nil {
		t.Fatal(err)
	}
	return c
}

// isRecord reports whether the field named name (JSON) of struct type t,
// embedded structs included, is a record (a struct), not a map.
func isRecord(t reflect.Type, name string) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct:
			if isRecord(f.Type, name) {
				return true
			}
		case tag == name:
			return f.Type.Kind() == reflect.Struct
		}
	}
	return false
}

// merge lays a record's given fields over its defaults, as Kong fills a
// nested record's defaults.
func merge(def, given any) any {
	d, ok1 := def.(map[string]any)
	g, ok2 := given.(map[string]any)
	if !ok1 || !ok2 {
		return given
	}
	out := map[string]any{}
	for k, v := range d {
		out[k] = v
	}
	for k, v := range g {
		out[k] = v
	}
	return out
}

// Request is a GET of path on https://gw.example with headers h, in
// go-pdk's test harness; run a plugin on it with env.DoHttps(config).
func Request(t *testing.T, path string, h http.Header) *test.TestEnv {
	t.Helper()
	env, err := test.New(t, test.Request{Method: "GET", Url: "https://gw.example" + path, Headers: h})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// Code is the denial code of the client's response; a body that is not
// JSON fails the test.
func Code(t *testing.T, env *test.TestEnv) string {
	t.Helper()
	var b struct {
		Code string `json:"code"`
	}
	if err := json.Unmarshal(env.ClientRes.Body, &b); err != nil {
		t.Fatalf("body %q is not JSON", env.ClientRes.Body)
	}
	return b.Code
}
