package kongx

import (
	"encoding/json"
	"log/slog"
	"strings"
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
