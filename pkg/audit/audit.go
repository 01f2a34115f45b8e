// Package audit writes one structured line per decision: which plugin, on
// which route, allowed or denied with which code, for which customer, and how
// long it took. Lines are JSON on stderr, which Kong copies into its error
// log for plugin servers. Tokens and credentials are never fields here.
package audit

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/subgate/subgate/pkg/denial"
)

// Record is one decision.
type Record struct {
	Plugin     string
	RouteID    string
	ServiceID  string
	Instance   string
	Allowed    bool
	Code       denial.Code
	Status     int
	CustomerID string
	// RequestID is Kong's request id; it is read only when denying (the allow
	// path does not spend a PDK call on it), so Kong's access log is the join.
	RequestID string
	Latency   time.Duration
	// Attrs carry plugin-specific facts (e.g. "served_from_cache").
	Attrs []slog.Attr
}

// Add appends a plugin-specific fact.
func (r *Record) Add(attrs ...slog.Attr) { r.Attrs = append(r.Attrs, attrs...) }

var logger atomic.Pointer[slog.Logger]

func init() { SetOutput(os.Stderr) }

// SetOutput sends all log lines to w as JSON (tests point it at a buffer).
func SetOutput(w io.Writer) {
	l := slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	logger.Store(l)
	slog.SetDefault(l)
}

// Logger is the process logger for operational events (misconfiguration,
// key refreshes, lost connections).
func Logger() *slog.Logger { return logger.Load() }

// Log writes the decision line.
func Log(r *Record) {
	decision := "deny"
	level := slog.LevelWarn
	if r.Allowed {
		decision, level = "allow", slog.LevelInfo
	}
	if r.Status >= 500 {
		level = slog.LevelError
	}
	attrs := make([]slog.Attr, 0, 10+len(r.Attrs))
	attrs = append(attrs,
		slog.String("plugin", r.Plugin),
		slog.String("decision", decision),
		slog.Float64("latency_ms", float64(r.Latency.Microseconds())/1000),
	)
	for _, kv := range [...][2]string{
		{"route_id", r.RouteID}, {"service_id", r.ServiceID}, {"instance", r.Instance},
		{"code", string(r.Code)}, {"customer_id", r.CustomerID}, {"request_id", r.RequestID},
	} {
		if kv[1] != "" {
			attrs = append(attrs, slog.String(kv[0], kv[1]))
		}
	}
	if r.Status != 0 {
		attrs = append(attrs, slog.Int("status", r.Status))
	}
	attrs = append(attrs, r.Attrs...)
	logger.Load().LogAttrs(context.Background(), level, "decision", attrs...)
}
