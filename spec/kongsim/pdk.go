package kongsim

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Request is the model a chain of plugins sees for one request: what
// Kong's PDK would read from nginx, and what the plugins change.
type Request struct {
	Method  string
	RawPath string // as the client sent it, without the query
	Query   string
	// Headers are the request headers. As in nginx, kong.service.request
	// setters change the same headers later plugins read and the upstream
	// receives.
	Headers http.Header

	// ID is Kong's request id (the nginx variable kong_request_id, sent
	// as X-Kong-Request-Id): 32 hex characters, as Kong's.
	ID string

	mu         sync.Mutex
	shared     map[string]any // kong.ctx.shared
	serialized map[string]any // kong.log.set_serialize_value
	exit       *Exit
	calls      map[string][]string // plugin -> PDK methods in order
	logs       []string
}

// Exit is the response a plugin ended the request with.
type Exit struct {
	Status  int
	Body    []byte
	Headers http.Header
}

// NewRequest builds the model from a client request.
func NewRequest(method, rawPath, query string, h http.Header) *Request {
	var id [16]byte
	_, _ = rand.Read(id[:])
	return &Request{Method: method, RawPath: rawPath, Query: query, Headers: h.Clone(), ID: hex.EncodeToString(id[:]),
		shared: map[string]any{}, serialized: map[string]any{}, calls: map[string][]string{}}
}

// Exited returns the first exit, or nil.
func (r *Request) Exited() *Exit { r.mu.Lock(); defer r.mu.Unlock(); return r.exit }

// Calls returns the PDK methods plugin called, in order.
func (r *Request) Calls(plugin string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls[plugin]...)
}

// Shared returns a kong.ctx.shared value.
func (r *Request) Shared(k string) any { r.mu.Lock(); defer r.mu.Unlock(); return r.shared[k] }

// Logs returns what plugins sent to kong.log.
func (r *Request) Logs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.logs...)
}

// call answers one PDK call with no error log.
func (r *Request) call(plugin, method string, args []byte) ([]byte, error) {
	return r.callLogged(nil, plugin, method, args)
}

// pdkLevels maps kong.log.* to their nginx levels (kong/pdk/log.lua _LEVELS).
var pdkLevels = map[string]Level{"kong.log.alert": LogAlert, "kong.log.crit": LogCrit, "kong.log.err": LogErr,
	"kong.log.warn": LogWarn, "kong.log.notice": LogNotice, "kong.log.info": LogInfo, "kong.log.debug": LogDebug}

// callLogged answers one PDK call; kong.log.* calls go to log (when not nil)
// at their own level. An unimplemented method is an error naming it, so a
// plugin cannot silently depend on something the specs do not model.
func (r *Request) callLogged(log *ErrorLog, plugin, method string, args []byte) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[plugin] = append(r.calls[plugin], method)
	str := func() (string, error) {
		var s pb.String
		err := proto.Unmarshal(args, &s)
		return s.V, err
	}
	out := func(m proto.Message) ([]byte, error) { return proto.Marshal(m) }
	switch method {
	case "kong.request.get_method":
		return out(&pb.String{V: r.Method})
	case "kong.request.get_raw_path":
		return rawString(r.RawPath), nil // client bytes: as lua-protobuf writes them (wire.go)
	case "kong.request.get_path":
		return rawString(NormalizePath(r.RawPath)), nil
	case "kong.request.get_raw_query":
		return out(&pb.String{V: r.Query})
	case "kong.request.get_header":
		name, err := str()
		if err != nil {
			return nil, err
		}
		return rawString(r.Headers.Get(name)), nil
	case "kong.request.get_headers":
		var max pb.Int
		if err := proto.Unmarshal(args, &max); err != nil {
			return nil, err
		}
		if max.V < 1 || max.V > 1000 {
			return nil, fmt.Errorf("kong.request.get_headers: max_headers %d out of 1..1000 (Kong raises an error)", max.V)
		}
		return rawStruct(headersStruct(r.Headers, int(max.V))), nil
	case "kong.ctx.shared.get":
		k, err := str()
		if err != nil {
			return nil, err
		}
		v, ok := r.shared[k]
		if !ok {
			return nil, nil // nil in Lua: an empty Value
		}
		pv, err := structpb.NewValue(v)
		if err != nil {
			return nil, err
		}
		return out(pv)
	case "kong.ctx.shared.set":
		var kv pb.KV
		if err := proto.Unmarshal(args, &kv); err != nil {
			return nil, err
		}
		r.shared[kv.K] = kv.V.AsInterface()
		return nil, nil
	case "kong.service.request.set_headers":
		var st structpb.Struct
		if err := proto.Unmarshal(args, &st); err != nil {
			return nil, err
		}
		for k, v := range st.Fields {
			r.setHeader(k, v)
		}
		return nil, nil
	case "kong.service.request.set_header":
		var kv pb.KV
		if err := proto.Unmarshal(args, &kv); err != nil {
			return nil, err
		}
		r.setHeader(kv.K, kv.V)
		return nil, nil
	case "kong.service.request.clear_header":
		name, err := str()
		if err != nil {
			return nil, err
		}
		r.Headers.Del(name)
		return nil, nil
	case "kong.response.exit":
		var ea pb.ExitArgs
		if err := proto.Unmarshal(args, &ea); err != nil {
			return nil, err
		}
		if r.exit == nil { // Kong keeps the first exit
			h := http.Header{}
			for k, v := range ea.Headers.GetFields() {
				for _, s := range values(v) {
					h.Add(k, s)
				}
			}
			r.exit = &Exit{Status: int(ea.Status), Body: ea.Body, Headers: h}
		}
		return nil, ErrExited
	case "kong.nginx.get_var":
		name, err := str()
		if err != nil {
			return nil, err
		}
		if name != "kong_request_id" {
			return nil, fmt.Errorf("kongsim: nginx variable %q is not modelled", name)
		}
		return out(&pb.String{V: r.ID})
	case "kong.log.set_serialize_value":
		var kv pb.KV
		if err := proto.Unmarshal(args, &kv); err != nil {
			return nil, err
		}
		return nil, setPath(r.serialized, kv.K, luaValue(kv.V))
	case "kong.log.serialize":
		b, err := json.Marshal(r.serialize(0, ""))
		if err != nil {
			return nil, err
		}
		return out(&pb.String{V: string(b)})
	case "kong.log.alert", "kong.log.crit", "kong.log.err", "kong.log.warn", "kong.log.notice", "kong.log.info", "kong.log.debug":
		var lv structpb.ListValue
		if err := proto.Unmarshal(args, &lv); err != nil {
			return nil, err
		}
		msg := luaConcat(lv.AsSlice())
		r.logs = append(r.logs, msg)
		if log != nil {
			// Kong 3.9.3 runs the call from pb_rpc.lua's call_pdk (line
			// 233) in the access phase without a namespace (set only for
			// the log phase's saved data): kong/pdk/log.lua writes
			// "[kong] %file_src:%line_src %message", as seen on the real
			// Kong.
			log.Write(pdkLevels[method], plugin, "[kong] pb_rpc.lua:233 "+msg)
		}
		return nil, nil
	}
	return nil, fmt.Errorf("kongsim: PDK method %q is not modelled: add it to spec/kongsim with Kong's semantics, and a spec for it", method)
}

// luaValue is a protobuf Value as Kong 3.9.3's pb_rpc.lua unwraps it
// (structpb_value): `bool_value or string_value or number_value or
// null_value`, so a false boolean, at any depth, becomes nil and its key is
// gone.
func luaValue(v *structpb.Value) any {
	switch k := v.GetKind().(type) {
	case *structpb.Value_BoolValue:
		if !k.BoolValue {
			return nil
		}
		return true
	case *structpb.Value_StructValue:
		m := map[string]any{}
		for name, f := range k.StructValue.GetFields() {
			if x := luaValue(f); x != nil {
				m[name] = x
			}
		}
		return m
	case *structpb.Value_ListValue:
		l := []any{}
		for _, e := range k.ListValue.GetValues() {
			l = append(l, luaValue(e))
		}
		return l
	case *structpb.Value_NullValue:
		return nil
	}
	return v.AsInterface()
}

// setPath sets a dot-separated key as kong.log.set_serialize_value does
// (kong/pdk/log.lua): intermediate tables are made, and a non-table on the
// way is an error.
func setPath(m map[string]any, key string, v any) error {
	parts := strings.Split(key, ".")
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p]
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		nm, ok := next.(map[string]any)
		if !ok {
			return fmt.Errorf("kong.log.set_serialize_value: %q is not a table on the way to %q", p, key)
		}
		m = nm
	}
	m[parts[len(parts)-1]] = v
	return nil
}

// Serialize is what kong.log.serialize() returns in the log phase, the
// entry every log plugin (file-log, http-log, ...) writes: Kong's basic
// serializer's fields this model knows (kong/pdk/log.lua: credentials in
// authorization headers redacted) with the set_serialize_value fields laid
// over them.
func (r *Request) Serialize(status int, route string) map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.serialize(status, route)
}

func (r *Request) serialize(status int, route string) map[string]any {
	headers := map[string]any{}
	for k, vs := range r.Headers {
		k = strings.ToLower(k)
		switch {
		case k == "authorization" || k == "proxy-authorization":
			headers[k] = "REDACTED"
		case len(vs) == 1:
			headers[k] = vs[0]
		default:
			headers[k] = append([]string(nil), vs...)
		}
	}
	uri := r.RawPath
	if r.Query != "" {
		uri += "?" + r.Query
	}
	entry := map[string]any{
		"request":  map[string]any{"id": r.ID, "method": r.Method, "uri": uri, "headers": headers},
		"response": map[string]any{"status": status},
		"route":    map[string]any{"name": route},
	}
	b, _ := json.Marshal(r.serialized) // a deep copy
	var extra map[string]any
	_ = json.Unmarshal(b, &extra)
	for k, v := range extra {
		entry[k] = v
	}
	return entry
}

// luaConcat joins kong.log's arguments as Kong does: each one tostring()-ed,
// with no separator (kong/pdk/log.lua); numbers as LuaJIT prints them (%.14g).
func luaConcat(args []any) string {
	var b strings.Builder
	for _, a := range args {
		switch v := a.(type) {
		case nil:
			b.WriteString("nil")
		case float64:
			b.WriteString(strconv.FormatFloat(v, 'g', 14, 64))
		case string:
			b.WriteString(v)
		case bool:
			b.WriteString(strconv.FormatBool(v))
		default:
			b.WriteString(fmt.Sprintf("table: %v", v))
		}
	}
	return b.String()
}

// setHeader applies ngx.req.set_header semantics as Kong's set_header(s)
// call it: a string or a list of strings replaces the header, an empty
// string becomes " " (Kong's normalize_multi_header), an empty list removes it.
func (r *Request) setHeader(name string, v *structpb.Value) {
	vals := values(v)
	r.Headers.Del(name)
	for _, s := range vals {
		if s == "" {
			s = " "
		}
		r.Headers.Add(name, s)
	}
}

func values(v *structpb.Value) []string {
	switch x := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return []string{x.StringValue}
	case *structpb.Value_ListValue:
		var out []string
		for _, e := range x.ListValue.GetValues() {
			out = append(out, e.GetStringValue())
		}
		return out
	}
	return nil
}

// headersStruct renders headers as Kong's get_headers does: lower-case
// names, a string for one value and a list for several, and at most max
// header LINES (lua-nginx-module counts each line, keeps the first max in
// wire order and reports the cut in a second return value that Kong's
// pb_rpc drops). Go's HTTP server keeps the order within a name but not
// across names, so lines are taken name by name in sorted order: which lines
// survive a cut differs from nginx, how many does not.
func headersStruct(h http.Header, max int) *structpb.Struct {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	st := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for _, k := range names {
		vs := h[k]
		if len(vs) > max {
			vs = vs[:max]
		}
		max -= len(vs)
		if len(vs) == 0 {
			break
		}
		if len(vs) == 1 {
			st.Fields[strings.ToLower(k)] = structpb.NewStringValue(vs[0])
			continue
		}
		l := make([]*structpb.Value, len(vs))
		for j, s := range vs {
			l[j] = structpb.NewStringValue(s)
		}
		st.Fields[strings.ToLower(k)] = structpb.NewListValue(&structpb.ListValue{Values: l})
	}
	return st
}
