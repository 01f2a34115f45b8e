// Package kongxtest drives plugin instances in go-pdk's test harness as
// Kong does: configured with the config Kong would send, so the tests
// exercise the same decoding path as production, and run with a PDK that
// also answers what Kong's protocol side has beyond go-pdk's harness.
package kongxtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/bridge"
	"github.com/Kong/go-pdk/bridge/bridgetest"
	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"github.com/Kong/go-pdk/test"
	"google.golang.org/protobuf/proto"

	"github.com/subgate/subgate/pkg/check"
	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/kongx"
)

// Config builds the JSON Kong sends at instance start (the schema's
// defaults filled in, records merged field by field, plus Kong's metadata)
// with set's values, and decodes it into a new instance of p, as go-pdk
// does. The defaults are the declaration's, as New() sets them.
func Config[C any, D check.Decider](t testing.TB, p *kongx.Plugin[C, D], set map[string]any) *kongx.Instance[C, D] {
	t.Helper()
	var decl C
	config.Defaults(&decl)
	var full map[string]any
	b, err := json.Marshal(decl)
	if err == nil {
		err = json.Unmarshal(b, &full)
	}
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range set {
		if _, known := full[k]; !known {
			t.Fatalf("kongxtest: %q is not a field of %T", k, decl)
		}
		if isRecord(reflect.TypeOf(decl), k) {
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
	i := p.New().(*kongx.Instance[C, D])
	if err := json.Unmarshal(b, i); err != nil {
		t.Fatal(err)
	}
	return i
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
// go-pdk's test harness; run a plugin on it with Do.
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

// Do runs a plugin instance on env as env.DoHttp does (its phases, with an
// echo service between access and response), through a PDK whose bridge
// answers the calls Kong's protocol side takes beyond go-pdk's harness:
// kong.nginx.get_var of kong_request_id (a fresh 32-hex id, as Kong's) and
// kong.log.set_serialize_value (accepted). Every other call goes to env,
// which fails the test on one it does not know. It returns the PDK
// methods the plugin called, in order.
func Do(env *test.TestEnv, instance any) []string {
	h := &harness{TestEnv: env, requestID: randomID()}
	kong := pdk.Init(bridgetest.MockFunc(h))
	type (
		certificater interface{ Certificate(*pdk.PDK) }
		rewriter     interface{ Rewrite(*pdk.PDK) }
		accesser     interface{ Access(*pdk.PDK) }
		responser    interface{ Response(*pdk.PDK) }
		logger       interface{ Log(*pdk.PDK) }
	)
	phase := func(run func()) {
		if env.IsRunning() {
			run()
		}
	}
	if h, ok := instance.(certificater); ok {
		phase(func() { h.Certificate(kong) })
	}
	if h, ok := instance.(rewriter); ok {
		phase(func() { h.Rewrite(kong) })
	}
	if h, ok := instance.(accesser); ok {
		phase(func() { h.Access(kong) })
	}
	env.ServiceRes = env.ServiceReq.ToResponse()
	env.DoResponse(struct{}{}) // the client response from the service's, as DoHttp does
	if h, ok := instance.(responser); ok {
		phase(func() { h.Response(kong) })
	}
	if h, ok := instance.(logger); ok {
		phase(func() { h.Log(kong) })
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls
}

// harness is go-pdk's test environment answering the calls above and
// Kong's consumer calls (see Consumers), and counting them all.
type harness struct {
	*test.TestEnv
	requestID string
	mu        sync.Mutex
	calls     []string
}

// kong holds, per request environment, the consumers Kong has and what the
// plugin authenticated.
var kong = struct {
	sync.Mutex
	consumers map[*test.TestEnv][]*pb.Consumer
	auth      map[*test.TestEnv]*pb.AuthenticateArgs
	method    map[*test.TestEnv]string
}{consumers: map[*test.TestEnv][]*pb.Consumer{}, auth: map[*test.TestEnv]*pb.AuthenticateArgs{}, method: map[*test.TestEnv]string{}}

// Method makes kong.request.get_method answer m for env's request: go-pdk's
// harness builds only GET, POST, PUT and PATCH requests (an OPTIONS
// preflight is built as a GET with Method(env, "OPTIONS")).
func Method(env *test.TestEnv, m string) {
	kong.Lock()
	defer kong.Unlock()
	kong.method[env] = m
}

// Consumers gives env's Kong these consumers: kong.client.load_consumer
// answers as Kong 3.9.3's kong/pdk/client.lua does (by id when the value
// is a UUID, then by username when asked; an id that is not a UUID without
// by_username raises an error, which fails the test), and pb_rpc.lua's
// empty reply when there is none. Without Consumers, go-pdk's harness
// answers every lookup with one fixed consumer.
func Consumers(env *test.TestEnv, cs ...*pb.Consumer) {
	kong.Lock()
	defer kong.Unlock()
	kong.consumers[env] = append(kong.consumers[env], cs...)
}

// Authenticated is what the plugin told Kong about the caller of env's
// request (kong.client.authenticate), nil when it told nothing.
func Authenticated(env *test.TestEnv) *pb.AuthenticateArgs {
	kong.Lock()
	defer kong.Unlock()
	return kong.auth[env]
}

var uuid = regexp.MustCompile(`^(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// consumerCall answers kong.request.get_method as Method says, and
// kong.client.load_consumer and kong.client.authenticate when env has
// Consumers; ok is false otherwise.
func (h *harness) consumerCall(method string, args []byte) (out []byte, ok bool) {
	kong.Lock()
	defer kong.Unlock()
	if m, ok := kong.method[h.TestEnv]; ok && method == "kong.request.get_method" {
		out, err := proto.Marshal(bridge.WrapString(m))
		if err != nil {
			h.Errorf("kongxtest: %v", err)
		}
		return out, true
	}
	cs, modelled := kong.consumers[h.TestEnv]
	if !modelled {
		return nil, false
	}
	switch method {
	case "kong.client.load_consumer":
		var spec pb.ConsumerSpec
		if err := proto.Unmarshal(args, &spec); err != nil {
			h.Errorf("kongxtest: %v", err)
			return nil, true
		}
		if !uuid.MatchString(spec.Id) && !spec.ByUsername {
			h.Errorf("kongxtest: kong.client.load_consumer(%q, false): Kong raises \"cannot load a consumer with an id that is not a uuid\"", spec.Id)
			return nil, true
		}
		var found *pb.Consumer
		for _, c := range cs {
			if uuid.MatchString(spec.Id) && c.Id == spec.Id {
				found = c
				break
			}
		}
		for _, c := range cs {
			if found == nil && spec.ByUsername && c.Username == spec.Id {
				found = c
			}
		}
		if found == nil {
			return nil, true // Kong returns nil: pb_rpc sends an empty frame
		}
		b, err := proto.Marshal(found)
		if err != nil {
			h.Errorf("kongxtest: %v", err)
		}
		return b, true
	case "kong.client.authenticate":
		var a pb.AuthenticateArgs
		if err := proto.Unmarshal(args, &a); err != nil {
			h.Errorf("kongxtest: %v", err)
		}
		kong.auth[h.TestEnv] = &a
		return nil, true
	}
	return nil, false
}

func (h *harness) Handle(method string, args []byte) []byte {
	h.mu.Lock()
	h.calls = append(h.calls, method)
	h.mu.Unlock()
	switch method {
	case "kong.nginx.get_var":
		var name pb.String
		if err := proto.Unmarshal(args, &name); err != nil || name.V != "kong_request_id" {
			h.Errorf("kongxtest: kong.nginx.get_var(%q) is not modelled", name.V)
			return nil
		}
		out, err := proto.Marshal(bridge.WrapString(h.requestID))
		if err != nil {
			h.Errorf("kongxtest: %v", err)
		}
		return out
	case "kong.log.set_serialize_value":
		return nil
	}
	if out, ok := h.consumerCall(method, args); ok {
		return out
	}
	return h.TestEnv.Handle(method, args)
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Case is one row of a plugin's PDK-call table: a request (env), the
// instance it runs on, the status it must get, and what to change first
// (Before, optional: an upstream service's answer).
type Case struct {
	Name     string
	Instance any
	Env      *test.TestEnv
	Status   int
	Before   func()
}

// CallsTable runs each case through Do and renders the PDK calls it made
// as the table of the plugin's README.
func CallsTable(t *testing.T, cases ...Case) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("| request | PDK calls | methods, in order |\n| --- | --- | --- |\n")
	for _, c := range cases {
		if c.Before != nil {
			c.Before()
		}
		calls := Do(c.Env, c.Instance)
		if c.Env.ClientRes.Status != c.Status {
			t.Fatalf("%s: status %d, want %d (%s)", c.Name, c.Env.ClientRes.Status, c.Status, c.Env.ClientRes.Body)
		}
		fmt.Fprintf(&b, "| %s | %d | `%s` |\n", c.Name, len(calls), strings.Join(calls, "`, `"))
	}
	return b.String()
}
