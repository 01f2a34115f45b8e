package kongx

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/subgate/subgate/pkg/check"
)

// subgate records each section's facts as a group: Kong's log serializer
// must receive them as nested objects (structpb refuses slog values), and
// booleans as strings (Kong drops a false boolean).
func TestSerializedGroups(t *testing.T) {
	r := &Record{Plugin: "subgate", Audit: check.Audit{CustomerID: "c"}}
	r.Add(slog.Group("jwt", slog.Bool("cached", true), slog.Bool("fresh", false), slog.String("kid", "k1")),
		slog.Group("ownership", slog.String("country", "DE"), slog.Duration("redis", 1500*time.Microsecond)))
	v, err := structpb.NewValue(r.serialized())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v.AsInterface())
	for _, want := range []string{`"jwt":{"cached":"true","fresh":"false","kid":"k1"}`, `"ownership":{"country":"DE","redis_ms":1.5}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("serialized %s lacks %s", b, want)
		}
	}
}

// The hand-written decision line says what slog's JSONHandler says for the
// same record (the time aside): every field, its JSON type and value, for
// allows, denials and facts of every kind the checks record, and strings
// that need escaping.
func TestAuditLineIsSlogs(t *testing.T) {
	deny := &Record{Plugin: "payment-token", Code: "token_expired", Status: 401, RequestID: "r1",
		Cause: "exp \"2026\" <passed>\n\x01", Latency: 1500 * time.Microsecond,
		Audit: check.Audit{CustomerID: "caf\xe9 \u2028"}}
	internal := &Record{Plugin: "subgate", Code: "internal_error", Status: 500}
	odd := &Record{Plugin: "jwt-claims", Allowed: true}
	odd.Add(slog.Group("empty"), slog.Group("", slog.String("inlined", "yes")), slog.Float64("ratio", 0.25),
		slog.Uint64("n", 7), slog.Time("at", time.Date(2026, 12, 4, 1, 2, 3, 4, time.UTC)), slog.Any("list", []int{1, 2}),
		slog.Group("outer", slog.Group("inner", slog.Bool("deep", false))))
	for _, r := range []*Record{allowRecord(), deny, internal, odd} {
		var got, want strings.Builder
		SetOutput(&got)
		logRecord(r)
		ref := slog.New(slog.NewJSONHandler(&want, &slog.HandlerOptions{Level: slog.LevelDebug}))
		ref.LogAttrs(context.Background(), slogLevel(r), "decision", slogAttrs(r)...)
		SetOutput(io.Discard)
		if !strings.HasSuffix(got.String(), "}\n") || strings.Count(got.String(), "\n") != 1 {
			t.Fatalf("not one line: %q", got.String())
		}
		g, w := decodeLine(t, got.String()), decodeLine(t, want.String())
		if _, err := time.Parse(time.RFC3339Nano, g["time"].(string)); err != nil {
			t.Errorf("time: %v", err)
		}
		delete(g, "time")
		delete(w, "time")
		if !reflect.DeepEqual(g, w) {
			t.Errorf("line\n %s\nslog writes\n %s", got.String(), want.String())
		}
	}
}

func decodeLine(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber() // 1.5 and 1.50 differ as text only
	if err := d.Decode(&m); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return m
}

// slogLevel and slogAttrs are the decision line as it was written through
// slog (the reference).
func slogLevel(r *Record) slog.Level {
	switch {
	case r.Status >= 500:
		return slog.LevelError
	case r.Allowed:
		return slog.LevelInfo
	}
	return slog.LevelWarn
}

func slogAttrs(r *Record) []slog.Attr {
	decision := "deny"
	if r.Allowed {
		decision = "allow"
	}
	attrs := []slog.Attr{slog.String("plugin", r.Plugin), slog.String("decision", decision),
		slog.Float64("latency_ms", float64(r.Latency.Microseconds())/1000)}
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
	return append(attrs, r.Facts...)
}

// Decision lines and slog's lines share one lock: written at once from
// two goroutines into a plain buffer, every line arrives whole (and -race
// sees no concurrent write).
func TestLinesShareOneLock(t *testing.T) {
	var buf bytes.Buffer
	SetOutput(&buf)
	defer SetOutput(io.Discard)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range 200 {
			logRecord(allowRecord())
		}
	}()
	go func() {
		defer wg.Done()
		for range 200 {
			slog.Info("operational", slog.String("k", "v"))
		}
	}()
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 400 {
		t.Fatalf("%d lines, want 400", len(lines))
	}
	for _, l := range lines {
		decodeLine(t, l)
	}
}
