package kongsim

import (
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

	mu     sync.Mutex
	shared map[string]any // kong.ctx.shared
	exit   *Exit
	calls  map[string][]string // plugin -> PDK methods in order
	logs   []string
}

// Exit is the response a plugin ended the request with.
type Exit struct {
	Status  int
	Body    []byte
	Headers http.Header
}

// NewRequest builds the model from a client request.
func NewRequest(method, rawPath, query string, h http.Header) *Request {
	return &Request{Method: method, RawPath: rawPath, Query: query, Headers: h.Clone(),
		shared: map[string]any{}, calls: map[string][]string{}}
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
		return out(&pb.String{V: r.RawPath})
	case "kong.request.get_path":
		return out(&pb.String{V: NormalizePath(r.RawPath)})
	case "kong.request.get_raw_query":
		return out(&pb.String{V: r.Query})
	case "kong.request.get_header":
		name, err := str()
		if err != nil {
			return nil, err
		}
		return out(&pb.String{V: r.Headers.Get(name)})
	case "kong.request.get_headers":
		var max pb.Int
		if err := proto.Unmarshal(args, &max); err != nil {
			return nil, err
		}
		if max.V < 1 || max.V > 1000 {
			return nil, fmt.Errorf("kong.request.get_headers: max_headers %d out of 1..1000 (Kong raises an error)", max.V)
		}
		return out(headersStruct(r.Headers, int(max.V)))
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
	case "kong.log.alert", "kong.log.crit", "kong.log.err", "kong.log.warn", "kong.log.notice", "kong.log.info", "kong.log.debug":
		var lv structpb.ListValue
		if err := proto.Unmarshal(args, &lv); err != nil {
			return nil, err
		}
		msg := luaConcat(lv.AsSlice())
		r.logs = append(r.logs, msg)
		if log != nil {
			// Kong namespaces kong.log with the running plugin's name
			// (kong/init.lua set_namespaced_log; kong/pdk/log.lua format
			// "[kong] %file_src:%line_src [%namespace] %message").
			log.Write(pdkLevels[method], plugin, "[kong] pb_rpc.lua ["+plugin+"] "+msg)
		}
		return nil, nil
	}
	return nil, fmt.Errorf("kongsim: PDK method %q is not modelled: add it to spec/kongsim with Kong's semantics, and a spec for it", method)
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
// names, a string for one value and a list for several, at most max names.
func headersStruct(h http.Header, max int) *structpb.Struct {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	st := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for i, k := range names {
		if i == max {
			break
		}
		vs := h[k]
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
