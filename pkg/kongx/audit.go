package kongx

// The audit line: one structured line per decision, which plugin, on which
// route, allowed or denied with which code, for which customer, and how long
// it took. Lines are JSON on stderr, which Kong copies into its error log
// for plugin servers. Tokens and credentials are never fields here.

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/subgate/subgate/pkg/check"
	"github.com/subgate/subgate/pkg/denial"
)

// Record is one decision.
type Record struct {
	Plugin    string
	RouteID   string
	ServiceID string
	Instance  string
	Allowed   bool
	Code      denial.Code
	Status    int
	// Audit is the customer and the check's facts (e.g. "cached",
	// "subscription_id").
	check.Audit
	// RequestID is Kong's request id; it is read only when denying (the allow
	// path does not spend a PDK call on it), so Kong's access log is the join.
	RequestID string
	Latency   time.Duration
	// Cause is a denial's operator-facing cause (denial.Denial.Cause).
	Cause string
}

func init() { SetOutput(os.Stderr) }

// out is where every line goes: the decision lines (logRecord) and slog's
// write through it, one lock for both, so lines never interleave.
var out atomic.Pointer[lockedWriter]

type lockedWriter struct {
	sync.Mutex
	w io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.Lock()
	defer l.Unlock()
	return l.w.Write(p)
}

// SetOutput sends all log lines, the decisions and the operational events
// of every package (through slog's default logger), to w as JSON (tests
// point it at a buffer).
func SetOutput(w io.Writer) {
	lw := &lockedWriter{w: w}
	out.Store(lw)
	slog.SetDefault(slog.New(slog.NewJSONHandler(lw, &slog.HandlerOptions{Level: slog.LevelDebug})))
}

var linePool = sync.Pool{New: func() any { return new([]byte) }}

// logRecord writes the decision line: the fields slog's JSONHandler would
// write for it (audit_test holds the two equal), appended by hand, one
// write per line. slog's generic path cost 3-4 µs a line, on every request.
func logRecord(r *Record) {
	decision, level := "deny", slog.LevelWarn
	if r.Allowed {
		decision, level = "allow", slog.LevelInfo
	}
	if r.Status >= 500 {
		level = slog.LevelError
	}
	bp := linePool.Get().(*[]byte)
	b := append((*bp)[:0], `{"time":"`...)
	b = time.Now().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"`...)
	b = append(b, level.String()...)
	b = append(b, `","msg":"decision","plugin":`...)
	b = appendString(b, r.Plugin)
	b = append(b, `,"decision":"`...)
	b = append(b, decision...)
	b = append(b, `","latency_ms":`...)
	b = strconv.AppendFloat(b, float64(r.Latency.Microseconds())/1000, 'f', -1, 64)
	for _, kv := range [...][2]string{
		{"route_id", r.RouteID}, {"service_id", r.ServiceID}, {"instance", r.Instance},
		{"code", string(r.Code)}, {"customer_id", r.CustomerID}, {"request_id", r.RequestID}, {"cause", r.Cause},
	} {
		if kv[1] != "" {
			b = appendKey(b, kv[0])
			b = appendString(b, kv[1])
		}
	}
	if r.Status != 0 {
		b = appendKey(b, "status")
		b = strconv.AppendInt(b, int64(r.Status), 10)
	}
	b = appendAttrs(b, r.Facts)
	b = append(b, "}\n"...)
	_, _ = out.Load().Write(b)
	*bp = b
	linePool.Put(bp)
}

func appendKey(b []byte, k string) []byte {
	b = append(b, ',')
	b = appendString(b, k)
	return append(b, ':')
}

// appendAttrs appends facts as slog's JSONHandler does: a group as a
// nested object (inline when unnamed, left out when empty), a duration in
// nanoseconds.
func appendAttrs(b []byte, attrs []slog.Attr) []byte {
	for _, a := range attrs {
		v := a.Value.Resolve()
		if v.Kind() == slog.KindGroup {
			g := v.Group()
			switch {
			case len(g) == 0:
			case a.Key == "":
				b = appendAttrs(b, g)
			default:
				b = append(appendKey(b, a.Key), '{')
				first := len(b)
				if b = appendAttrs(b, g); len(b) > first { // drop the first member's comma
					b = append(b[:first], b[first+1:]...)
				}
				b = append(b, '}')
			}
			continue
		}
		if a.Key == "" {
			continue
		}
		b = appendKey(b, a.Key)
		switch v.Kind() {
		case slog.KindString:
			b = appendString(b, v.String())
		case slog.KindBool:
			b = strconv.AppendBool(b, v.Bool())
		case slog.KindInt64:
			b = strconv.AppendInt(b, v.Int64(), 10)
		case slog.KindUint64:
			b = strconv.AppendUint(b, v.Uint64(), 10)
		case slog.KindDuration:
			b = strconv.AppendInt(b, int64(v.Duration()), 10)
		default: // floats, times, anything else: as encoding/json writes them
			j, err := json.Marshal(v.Any())
			if err != nil {
				j, _ = json.Marshal("!ERROR:" + err.Error())
			}
			b = append(b, j...)
		}
	}
	return b
}

// appendString appends s as a JSON string: in place when it is printable
// ASCII without a quote or backslash (ids, codes), else as encoding/json
// escapes it (control bytes, bytes that are not UTF-8 as U+FFFD).
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			j, _ := json.Marshal(s) // a string always encodes
			return append(b, j...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
