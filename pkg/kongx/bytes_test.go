package kongx_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/bridge/bridgetest"
	"github.com/Kong/go-pdk/test"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/subgate/subgate/pkg/check"
	"github.com/subgate/subgate/pkg/denial"
)

// rawKong answers get_headers and get_path as Kong's pb_rpc.lua does with
// lua-protobuf: strings byte for byte, UTF-8 or not (Go's proto.Marshal
// would refuse them). Everything else goes to go-pdk's harness.
type rawKong struct {
	*test.TestEnv
	headers map[string][]string
	path    string
	mu      sync.Mutex
	calls   []string
}

func (k *rawKong) Handle(method string, args []byte) []byte {
	k.mu.Lock()
	k.calls = append(k.calls, method)
	k.mu.Unlock()
	switch method {
	case "kong.request.get_headers":
		var st []byte
		for name, vs := range k.headers {
			var v []byte
			if len(vs) == 1 {
				v = protowire.AppendTag(v, 3, protowire.BytesType)
				v = protowire.AppendString(v, vs[0])
			} else {
				var list []byte
				for _, s := range vs {
					var e []byte
					e = protowire.AppendTag(e, 3, protowire.BytesType)
					e = protowire.AppendString(e, s)
					list = protowire.AppendTag(list, 1, protowire.BytesType)
					list = protowire.AppendBytes(list, e)
				}
				v = protowire.AppendTag(v, 6, protowire.BytesType)
				v = protowire.AppendBytes(v, list)
			}
			var entry []byte
			entry = protowire.AppendTag(entry, 1, protowire.BytesType)
			entry = protowire.AppendString(entry, name)
			entry = protowire.AppendTag(entry, 2, protowire.BytesType)
			entry = protowire.AppendBytes(entry, v)
			st = protowire.AppendTag(st, 1, protowire.BytesType)
			st = protowire.AppendBytes(st, entry)
		}
		return st
	case "kong.request.get_path":
		var s []byte
		s = protowire.AppendTag(s, 1, protowire.BytesType)
		return protowire.AppendString(s, k.path)
	case "kong.nginx.get_var":
		var s []byte
		s = protowire.AppendTag(s, 1, protowire.BytesType)
		return protowire.AppendString(s, "0123456789abcdef0123456789abcdef")
	case "kong.log.set_serialize_value":
		return nil
	}
	return k.TestEnv.Handle(method, args)
}

// A header value or decoded path that is not UTF-8 makes go-pdk refuse
// Kong's reply: 400 request_bytes_invalid (not a 500), its cause naming the
// header (not its value) or quoting the path, and logged below error level.
func TestNotUTF8IsRefusedWith400(t *testing.T) {
	for _, c := range []struct {
		name      string
		reads     check.Reads
		headers   map[string][]string
		path      string
		status    int
		cause     string
		notInLogs string
	}{
		{"a header", check.Headers, map[string][]string{"x-note": {"caf\xff"}, "authorization": {"Bearer secret-token"}}, "/x", 400,
			"not valid UTF-8 in the value of request header x-note", "secret-token"},
		{"a cookie among several values", check.Headers, map[string][]string{"cookie": {"a=1", "sid=caf\xe9"}}, "/x", 400,
			"request header cookie", "caf"},
		{"two headers", check.Headers, map[string][]string{"x-b": {"\xff"}, "x-a": {"\xc3"}}, "/x", 400,
			"request header x-a, x-b", ""},
		{"the path", check.Headers | check.Path, map[string][]string{"x-note": {"café"}}, "/subscriptions/4242\xff", 400,
			`the decoded request path is not valid UTF-8: "/subscriptions/4242\xff"`, ""},
		{"valid UTF-8 everywhere", check.Headers | check.Path, map[string][]string{"x-note": {"café"}}, "/subscriptions/4242é", 200, "", ""},
		{"a header nobody reads", 0, map[string][]string{"x-note": {"caf\xff"}}, "/x", 200, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			logs := capture(t)
			var seen *check.Request
			p := newProbe(t, `{}`, c.reads, func(req *check.Request) *denial.Denial {
				if _, den := req.ReadPath(); den != nil {
					return den
				}
				seen = req
				return nil
			})
			env, err := test.New(t, test.Request{Method: "GET", Url: "http://gw/x", Headers: http.Header{}})
			if err != nil {
				t.Fatal(err)
			}
			k := &rawKong{TestEnv: env, headers: c.headers, path: c.path}
			p.Access(pdk.Init(bridgetest.MockFunc(k)))
			if c.status == 200 { // allowed: no exit, decided on what Kong sent
				if env.ClientRes.Status != 0 || seen == nil {
					t.Fatalf("got %d %s, want the request decided and let through", env.ClientRes.Status, env.ClientRes.Body)
				}
				if c.reads&check.Path != 0 && seen.Path != c.path {
					t.Fatalf("decided on path %q", seen.Path)
				}
				return
			}
			if env.ClientRes.Status != c.status {
				t.Fatalf("got %d %s, want %d", env.ClientRes.Status, env.ClientRes.Body, c.status)
			}
			var body struct{ Code string }
			_ = json.Unmarshal(env.ClientRes.Body, &body)
			if body.Code != string(denial.RequestBytesInvalid) || seen != nil {
				t.Fatalf("body %s (decided: %v)", env.ClientRes.Body, seen != nil)
			}
			out := logs.String()
			if !strings.Contains(out, `"level":"WARN"`) || strings.Contains(out, `"level":"ERROR"`) {
				t.Errorf("want one warn-level audit line, no error:\n%s", out)
			}
			var line struct{ Cause string }
			_ = json.Unmarshal([]byte(strings.TrimSpace(out)), &line)
			if !strings.Contains(line.Cause, c.cause) || (c.notInLogs != "" && strings.Contains(out, c.notInLogs)) {
				t.Errorf("cause %q, want %q and never %q; logs:\n%s", line.Cause, c.cause, c.notInLogs, out)
			}
			for _, m := range k.calls {
				if m == "kong.log.err" || m == "kong.log.warn" {
					t.Errorf("a client's bytes reached Kong's error log through %s", m)
				}
			}
		})
	}
}

// The path is read when a check first asks for it, not before the check
// runs: in subgate its round trip to Kong overlaps the identity GET the
// chain started once the token verified (pkg/chain).
func TestPathIsReadWhenACheckAsks(t *testing.T) {
	var k *rawKong
	called := func(method string) bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		return slices.Contains(k.calls, method)
	}
	var before, after bool
	p := newProbe(t, `{}`, check.Headers|check.Path, func(req *check.Request) *denial.Denial {
		before = called("kong.request.get_path")
		path, den := req.ReadPath()
		after = called("kong.request.get_path") && path == "/subscriptions/4242"
		return den
	})
	env, err := test.New(t, test.Request{Method: "GET", Url: "http://gw/x", Headers: http.Header{}})
	if err != nil {
		t.Fatal(err)
	}
	k = &rawKong{TestEnv: env, headers: map[string][]string{"x-note": {"a"}}, path: "/subscriptions/4242"}
	p.Access(pdk.Init(bridgetest.MockFunc(k)))
	if before || !after || env.ClientRes.Status != 0 {
		t.Fatalf("get_path before the check ran: %v; read when asked: %v; status %d; calls %v", before, after, env.ClientRes.Status, k.calls)
	}
}
