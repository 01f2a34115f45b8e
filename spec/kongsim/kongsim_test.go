package kongsim

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestNormalizePathAsKong(t *testing.T) {
	for in, want := range map[string]string{
		// The example in Kong's kong.request.get_path() documentation.
		"/t/Abc%20123%C3%B8%2f/parent/..//test/./": "/t/Abc 123ø%2F/test/",
		"/subscriptions/%31234":                    "/subscriptions/1234",
		"/a/b/../../../c":                          "/c",
		"/a/./b/.":                                 "/a/b/",
		"//a//b":                                   "/a/b",
		"/a%2e%2e/b":                               "/a../b",
		"/a/%2e%2e/b":                              "/b",
		"/":                                        "/",
		"/x%zz":                                    "/x%zz",
	} {
		if got := NormalizePath(in); got != want {
			t.Errorf("NormalizePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func testInfo(t *testing.T) Info {
	var info Info
	raw := `{"Name":"p","Schema":{"name":"p","fields":[{"config":{"type":"record","fields":[
		{"a":{"type":"string"}},{"n":{"type":"integer"}},{"l":{"type":"array","elements":{"type":"string"}}},
		{"r":{"type":"record","fields":[{"x":{"type":"boolean"}},{"y":{"type":"string"}}]}},
		{"m":{"type":"map","keys":{"type":"string"},"values":{"type":"string"}}}]}}]}}`
	if err := json.Unmarshal([]byte(raw), &info); err != nil {
		t.Fatal(err)
	}
	return info
}

func TestEncodeConfigAsKong(t *testing.T) {
	info := testInfo(t)
	b, err := EncodeConfig(info, map[string]any{"a": "v", "r": map[string]any{"x": true}}, Meta{RouteID: "r1", PluginID: "p1", Seq: 3})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	_ = json.Unmarshal(b, &got)
	// Kong's plugins iterator reads configs without nulls (select context,
	// kong/db/schema/init.lua process_auto_fields): unset fields are absent.
	for _, k := range []string{"n", "l", "m", "consumer_id", "plugin_instance_name"} {
		if v, ok := got[k]; ok {
			t.Errorf("unset field %s: present with %v, want absent", k, v)
		}
	}
	if r := got["r"].(map[string]any); r["x"] != true || len(r) != 1 {
		t.Errorf("record %v", r)
	}
	if got["route_id"] != "r1" || got["__plugin_id"] != "p1" || got["__seq__"] != float64(3) {
		t.Errorf("metadata %v", got)
	}
	for name, bad := range map[string]map[string]any{
		"unknown field": {"zzz": 1},
		"wrong type":    {"n": "ten"},
		"fraction":      {"n": 1.5},
		"array element": {"l": []any{"a", 2.0}},
		"record field":  {"r": map[string]any{"x": "yes"}},
	} {
		if _, err := EncodeConfig(info, bad, Meta{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPDKModel(t *testing.T) {
	r := NewRequest("GET", "/a/../b", "", http.Header{"X-A": {"1"}, "X-B": {"2", "3"}})
	call := func(method string, m proto.Message) ([]byte, error) {
		var args []byte
		if m != nil {
			args, _ = proto.Marshal(m)
		}
		return r.call("p", method, args)
	}
	out, _ := call("kong.request.get_path", nil)
	var s pb.String
	_ = proto.Unmarshal(out, &s)
	if s.V != "/b" {
		t.Fatalf("get_path %q", s.V)
	}
	hs, _ := structpb.NewStruct(map[string]any{"X-A": []any{}, "X-C": "", "X-B": []any{"4"}})
	if _, err := call("kong.service.request.set_headers", hs); err != nil {
		t.Fatal(err)
	}
	if r.Headers.Get("X-A") != "" || r.Headers.Get("X-C") != " " || strings.Join(r.Headers.Values("X-B"), ",") != "4" {
		t.Fatalf("set_headers semantics: %v", r.Headers)
	}
	if _, err := call("kong.response.exit", &pb.ExitArgs{Status: 403}); err != ErrExited {
		t.Fatalf("exit: %v", err)
	}
	_, _ = call("kong.response.exit", &pb.ExitArgs{Status: 500})
	if r.Exited().Status != 403 {
		t.Fatal("Kong keeps the first exit")
	}
	if _, err := call("kong.nginx.get_var", &pb.String{V: "x"}); err == nil || !strings.Contains(err.Error(), "not modelled") {
		t.Fatalf("an unmodelled PDK method must fail loudly: %v", err)
	}
	if got := len(r.Calls("p")); got != 5 {
		t.Fatalf("counted %d calls, want 5", got)
	}
}

func TestCheckMetaschemaOnInfo(t *testing.T) {
	if err := CheckMetaschema(testInfo(t)); err != nil {
		t.Errorf("the go-pdk shaped test schema is refused: %v", err)
	}
}
