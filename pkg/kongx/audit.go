package kongx

// The audit line: one structured line per decision, which plugin, on which
// route, allowed or denied with which code, for which customer, and how long
// it took. Lines are JSON on stderr, which Kong copies into its error log
// for plugin servers. Tokens and credentials are never fields here.

import (
	"context"
	"io"
	"log/slog"
	"os"
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

// SetOutput sends all log lines, the decisions and the operational events
// of every package (through slog's default logger), to w as JSON (tests
// point it at a buffer).
func SetOutput(w io.Writer) {
	slog.SetDefault(slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})))
}

// logRecord writes the decision line.
func logRecord(r *Record) {
	decision := "deny"
	level := slog.LevelWarn
	if r.Allowed {
		decision, level = "allow", slog.LevelInfo
	}
	if r.Status >= 500 {
		level = slog.LevelError
	}
	attrs := make([]slog.Attr, 0, 10+len(r.Facts))
	attrs = append(attrs,
		slog.String("plugin", r.Plugin),
		slog.String("decision", decision),
		slog.Float64("latency_ms", float64(r.Latency.Microseconds())/1000),
	)
	for _, kv := range [...][2]string{
		{"route_id", r.RouteID}, {"service_id", r.ServiceID}, {"instance", r.Instance},
		{"code", string(r.Code)}, {"customer_id", r.CustomerID}, {"request_id", r.RequestID}, {"cause", r.Cause},
	} {
		if kv[1] != "" {
			attrs = append(attrs, slog.String(kv[0], kv[1]))
		}
	}
	if r.Status != 0 {
		attrs = append(attrs, slog.Int("status", r.Status))
	}
	attrs = append(attrs, r.Facts...)
	slog.Default().LogAttrs(context.Background(), level, "decision", attrs...)
}
