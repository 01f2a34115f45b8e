package kongx

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/Kong/go-pdk"
	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/types/known/structpb"
)

// SerializeKey is where the decision sits in Kong's log serializer: every
// log plugin's entry carries it as "subgate".
const SerializeKey = "subgate"

// serialize hands the decision to Kong with
// kong.log.set_serialize_value(SerializeKey, {...}) (one PDK call). go-pdk
// v0.11.2 leaves its wrapper commented out; Kong's pb_rpc.lua takes the
// call with a KV argument, so it goes through the bridge.
func serialize(kong *pdk.PDK, r *Record) {
	v, err := structpb.NewValue(r.serialized())
	if err != nil {
		slog.Error("decision not serializable", slog.String("plugin", r.Plugin), slog.String("error", err.Error()))
		return
	}
	if err := kong.Log.Ask("kong.log.set_serialize_value", &pb.KV{K: SerializeKey + "." + r.Plugin, V: v}, nil); err != nil {
		slog.Warn("kong.log.set_serialize_value failed", slog.String("plugin", r.Plugin), slog.String("error", err.Error()))
	}
}

// serialized is the decision as log plugins see it: never a token or a
// secret, only what the audit line holds.
func (r *Record) serialized() map[string]any {
	decision := "deny"
	if r.Allowed {
		decision = "allow"
	}
	m := map[string]any{"decision": decision, "latency_ms": float64(r.Latency.Microseconds()) / 1000}
	for k, v := range map[string]string{"code": string(r.Code), "customer_id": r.CustomerID, "request_id": r.RequestID, "cause": r.Cause} {
		if v != "" {
			m[k] = v
		}
	}
	if r.Status != 0 {
		m["status"] = r.Status
	}
	putAttrs(m, r.Facts)
	return m
}

// putAttrs adds plugin-specific facts; a group (subgate's per-section
// facts) becomes a nested object. A boolean goes as the string "true" or
// "false": Kong 3.9's pb_rpc.lua unwraps a protobuf Value with
// `bool_value or string_value or ...`, so a false boolean arrives as nothing
// and the field would be missing from every log entry.
func putAttrs(m map[string]any, attrs []slog.Attr) {
	for _, a := range attrs {
		switch v := a.Value.Resolve(); v.Kind() {
		case slog.KindBool:
			m[a.Key] = strconv.FormatBool(v.Bool())
		case slog.KindDuration:
			m[a.Key+"_ms"] = float64(v.Duration().Microseconds()) / 1000
		case slog.KindGroup:
			g := map[string]any{}
			putAttrs(g, v.Group())
			m[a.Key] = g
		default:
			m[a.Key] = v.Any()
		}
	}
}

// operatorInterval bounds how often one cause is written to Kong's error log.
const operatorInterval = 10 * time.Second

var operatorLog = struct {
	sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
}{last: map[string]time.Time{}, suppressed: map[string]int{}}

// operatorLine writes a denial an operator must act on (a 5xx: Redis or
// the identity service down, keys or revocation state unavailable, a
// refused config, a panic) to Kong's error log through kong.log.err or
// kong.log.warn (one PDK call). A plugin server's own output reaches Kong's
// log at INFO only (kong/runloop/plugin_servers/process.lua), hidden at
// Kong's default log_level notice; inside a request the PDK is the way up.
// One line per plugin and code per operatorInterval, with the count of
// those left out since.
func operatorLine(kong *pdk.PDK, r *Record) {
	if r.Status < 500 {
		return
	}
	key := r.Plugin + "|" + string(r.Code)
	operatorLog.Lock()
	now := time.Now()
	if now.Sub(operatorLog.last[key]) < operatorInterval {
		operatorLog.suppressed[key]++
		operatorLog.Unlock()
		return
	}
	operatorLog.last[key] = now
	more := operatorLog.suppressed[key]
	operatorLog.suppressed[key] = 0
	operatorLog.Unlock()
	msg := fmt.Sprintf("subgate %s denied with %d %s (route %s, request %s): %s", r.Plugin, r.Status, r.Code, r.RouteID, r.RequestID, r.Cause)
	if more > 0 {
		msg += fmt.Sprintf(" [%d more since the last line]", more)
	}
	write := kong.Log.Warn
	if r.Status == 500 {
		write = kong.Log.Err
	}
	_ = write(msg)
}

// quietPDK keeps go-pdk's expected noise out of Kong's error log: Kong
// abandons the connection after kong.response.exit, so go-pdk logs "use of
// closed network connection" once per denial.
type quietPDK struct{ w io.Writer }

func (q quietPDK) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("use of closed network connection")) {
		return len(p), nil
	}
	return q.w.Write(p)
}

func init() { log.SetOutput(quietPDK{os.Stderr}) }
