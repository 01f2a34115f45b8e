// Package kongxtest helps plugin unit tests configure a plugin the way Kong
// does, so the tests exercise the same decoding path as production.
package kongxtest

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// Config builds the JSON Kong sends at instance start (every schema field
// present, null where kong.yml sets nothing, plus a route id) with set's
// values, and decodes it into the value newConfig returns, as go-pdk does.
func Config[T any](t testing.TB, newConfig func() any, set map[string]any) T {
	t.Helper()
	c, ok := newConfig().(T)
	if !ok {
		t.Fatalf("kongxtest: New returned %T", newConfig())
	}
	full := map[string]any{"route_id": "route-under-test", "__plugin_id": "plugin-under-test", "__seq__": 1}
	rt := reflect.TypeOf(c)
	for rt.Kind() == reflect.Pointer {
		rt = rt.Elem()
	}
	for i := 0; i < rt.NumField(); i++ {
		if f := rt.Field(i); f.IsExported() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			full[name] = nil
		}
	}
	for k, v := range set {
		if _, known := full[k]; !known {
			t.Fatalf("kongxtest: %q is not a field of %s", k, rt)
		}
		full[k] = v
	}
	b, err := json.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, c); err != nil {
		t.Fatal(err)
	}
	return c
}
