package kongx

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/subgate/subgate/pkg/check"
)

// allowRecord is subgate's allow on the coaching route, facts as its
// sections record them.
func allowRecord() *Record {
	r := &Record{Plugin: "subgate", RouteID: "6f0c9a1e-0d3e-4a57-9c62-6d1a5c0f1b11", ServiceID: "0b5d2f8e-7f3a-4a8e-a2c1-3f3c2b1d9e44",
		Instance: "coaching-subgate", Allowed: true, Latency: 312 * time.Microsecond,
		Audit: check.Audit{CustomerID: "8a5f0c3e-1b2d-4e6f-9a7b-0c1d2e3f4a5b"}}
	r.Add(slog.Group("jwt", slog.Bool("cached", true), slog.String("kid", "k1"), slog.String("jti", "b3f1c2d4")),
		slog.Group("ownership", slog.String("country", "DE"), slog.String("subscription_id", "1234"), slog.Bool("cached", false), slog.Duration("redis", 180*time.Microsecond)),
		slog.Group("payment", slog.String("jti", "p-77"), slog.String("kid", "pay1"), slog.Bool("cached", true)),
		slog.Group("identity", slog.Bool("cached", false), slog.Int("attempts", 1), slog.Duration("identity", 240*time.Microsecond)))
	return r
}

// BenchmarkAuditLine is the decision line of one allow (make bench;
// benchstat across revisions).
func BenchmarkAuditLine(b *testing.B) {
	SetOutput(io.Discard)
	b.Cleanup(func() { SetOutput(io.Discard) })
	r := allowRecord()
	b.ReportAllocs()
	for b.Loop() {
		logRecord(r)
	}
}
