// Package kongx is the thin layer between the Kong PDK and subgate's decision
// code: it starts a plugin instance from Kong's config, runs a phase under a
// panic guard, answers denials in the one error shape, writes the audit line
// and metrics, and moves the shared claims and upstream headers in as few PDK
// calls as possible. Every PDK call is a round trip to Kong; the comments say
// how many each helper costs.
package kongx

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/Kong/go-pdk"

	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/jwtclaims"
	"github.com/subgate/subgate/pkg/metrics"
)

// Meta is what Kong adds to every plugin config it sends
// (kong/runloop/plugins_iterator.lua: get_plugin_config).
type Meta struct {
	RouteID      string `json:"route_id"`
	ServiceID    string `json:"service_id"`
	PluginID     string `json:"__plugin_id"`
	InstanceName string `json:"plugin_instance_name"`
}

// Gate is the per-instance runtime a plugin config carries: the decider built
// from the config, or the reason it could not be built. go-pdk keeps one
// config value per plugin instance for its lifetime, so the decider's caches
// live as long as the route's configuration does.
type Gate[D any] struct {
	plugin  string
	meta    Meta
	logging string // log_decisions
	decider D
	err     error
}

// Unstarted is the gate a plugin's New() returns: until Kong's config has
// been decoded into it, every request is denied as misconfigured.
func Unstarted[D any](plugin string) *Gate[D] {
	return &Gate[D]{plugin: plugin, logging: config.LogDeny, err: fmt.Errorf("%s: configuration was never decoded", plugin)}
}

// Start is called from a config's UnmarshalJSON with the raw config Kong
// sent and the plugin's declared config, which holds its defaults (New()
// set them): it decodes and validates the config (every problem at once)
// and builds the decider. A bad config is logged now, at instance start,
// and denied with 500 plugin_misconfigured on every request, never let
// through.
func Start[C, D any](plugin string, raw []byte, cfg *C, build func(C) (D, error)) *Gate[D] {
	g := &Gate[D]{plugin: plugin, logging: config.LogDeny}
	_ = json.Unmarshal(raw, &g.meta) // metadata is optional; a test may send none
	if g.err = config.Decode(raw, cfg); g.err == nil {
		g.decider, g.err = build(*cfg)
	}
	if l, ok := any(cfg).(interface{ DecisionLogging() string }); ok && l.DecisionLogging() != "" {
		g.logging = l.DecisionLogging()
	}
	if g.err != nil {
		slog.Error("plugin misconfigured: every request on this route will be denied",
			slog.String("plugin", plugin), slog.String("route_id", g.meta.RouteID),
			slog.String("instance", g.meta.InstanceName), slog.String("error", g.err.Error()))
	}
	return g
}

// Err is the configuration error, nil when the instance is usable.
func (g *Gate[D]) Err() error { return g.err }

// Decider returns the built decider (for tests and benchmarks).
func (g *Gate[D]) Decider() D { return g.decider }

// Run runs one phase. decide does the plugin's PDK reads, asks its decider,
// and returns nil to let the request through or a denial. Run answers the
// denial (see deny), recovers a panic into a 500 (a panic would otherwise
// kill the plugin server and every request on it), hands the decision to
// Kong's log serializer as log_decisions says, and writes the audit line
// and metrics for every outcome.
//
// PDK calls added to decide's: none on an allow by default (one with
// log_decisions all); on a denial, Kong's request id, the serialized
// decision (unless none), an operator line when the denial needs action
// (rate-limited), and the exit.
func (g *Gate[D]) Run(kong *pdk.PDK, decide func(d D, rec *Record) *denial.Denial) {
	start := time.Now()
	rec := &Record{Plugin: g.plugin, RouteID: g.meta.RouteID, ServiceID: g.meta.ServiceID, Instance: g.meta.InstanceName}
	defer func() {
		if p := recover(); p != nil {
			slog.Error("panic in plugin handler; request denied",
				slog.String("plugin", g.plugin), slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
			g.deny(kong, rec, start, denial.New(denial.InternalError, "").WithCause(fmt.Sprintf("recovered panic: %v", p)))
		}
		if rec.Latency == 0 {
			rec.Latency = time.Since(start)
		}
		logRecord(rec)
		decision := "allow"
		if !rec.Allowed {
			decision = "deny"
		}
		metrics.Decisions.Inc(g.plugin, decision, string(rec.Code))
		metrics.Latency.Observe(rec.Latency, g.plugin)
	}()
	if g.err != nil {
		g.deny(kong, rec, start, denial.New(denial.PluginMisconfigured, "").WithCause("configuration refused at instance start: "+g.err.Error()))
		return
	}
	if d := decide(g.decider, rec); d != nil {
		g.deny(kong, rec, start, d)
		return
	}
	rec.Allowed = true
	if g.logging == config.LogAll {
		rec.Latency = time.Since(start)
		serialize(kong, rec)
	}
}

// deny measures the latency before answering: in Kong's access phase
// kong.response.exit does not return to the plugin until Kong has finished
// the request, so time spent after it is Kong's, not ours. Everything Kong
// must see comes before the exit: after it Kong never resumes the plugin.
func (g *Gate[D]) deny(kong *pdk.PDK, rec *Record, start time.Time, d *denial.Denial) {
	rec.Allowed = false
	rec.Code, rec.Status, rec.Cause = d.Code, d.Status, d.Cause
	rec.Latency = time.Since(start)
	rec.RequestID = requestID(kong)
	operatorLine(kong, rec)
	if g.logging != config.LogNone {
		serialize(kong, rec)
	}
	kong.Response.Exit(d.Status, d.Body(rec.RequestID), d.Headers())
}

// requestID is Kong's own request id (the nginx variable kong_request_id,
// the X-Kong-Request-Id Kong sends and logs; one PDK call, on denials
// only). Should Kong not answer, a random id still lets the audit line and
// the body be joined.
func requestID(kong *pdk.PDK) string {
	if goPDKHarness {
		return randomID()
	}
	if id, err := kong.Nginx.GetVar("kong_request_id"); err == nil && id != "" {
		return id
	}
	return randomID()
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// maxHeaders is the most header lines kong.request.get_headers returns
// (Kong allows 1..1000; go-pdk's -1 means 100). ngx.req.get_headers keeps
// the first max lines and reports the truncation in a second return value
// that Kong's pb_rpc drops (it wraps only the first), so a plugin cannot
// see what lies past the limit, while nginx proxies every line.
const maxHeaders = 1000

// RequestHeaders reads every request header in one PDK call
// (kong.request.get_headers; names lower-cased, values in order). A request
// whose header lines reach maxHeaders may have been cut short, and a second
// token header past the cut would reach the upstream unchecked: it is
// refused (431), never decided on part of its headers.
func RequestHeaders(kong *pdk.PDK) (map[string][]string, *denial.Denial) {
	h, err := kong.Request.GetHeaders(maxHeaders)
	if err != nil {
		return nil, denial.New(denial.InternalError, "could not read the request headers").WithCause(err.Error())
	}
	return h, checkHeaderCount(h)
}

func checkHeaderCount(h map[string][]string) *denial.Denial {
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	if n >= maxHeaders {
		return denial.Newf(denial.TooManyHeaders, "the request has %d or more header lines", maxHeaders)
	}
	return nil
}

// SetUpstream sets the gateway-owned upstream headers in one PDK call
// (kong.service.request.set_headers). Every name in owned is overwritten:
// with its value where values has a non-empty one, otherwise removed (an
// empty list clears a header in Kong), so a client's copy of an owned header
// never reaches the upstream.
func SetUpstream(kong *pdk.PDK, owned []string, values map[string]string) error {
	if len(owned) == 0 {
		return nil
	}
	h := make(map[string][]string, len(owned))
	for _, name := range owned {
		if v := values[name]; v != "" {
			h[name] = []string{v}
		} else {
			h[name] = []string{}
		}
	}
	return kong.ServiceRequest.SetHeaders(h)
}

// StoreClaims puts the verified claims in kong.ctx.shared (one PDK call).
// Only jwt-claims calls it.
func StoreClaims(kong *pdk.PDK, v *jwtclaims.Verified) error {
	s, err := jwtclaims.Encode(v)
	if err != nil {
		return err
	}
	return kong.Ctx.SetShared(jwtclaims.SharedKey, s)
}

// LoadClaims reads the verified claims (one PDK call). When there are none
// it returns a claims_missing denial and logs that the route is
// misconfigured: a plugin that needs claims never falls back to headers.
func LoadClaims(kong *pdk.PDK, plugin string) (*jwtclaims.Verified, *denial.Denial) {
	raw, err := kong.Ctx.GetSharedAny(jwtclaims.SharedKey)
	s, _ := raw.(string)
	if err == nil {
		var v *jwtclaims.Verified
		if v, err = jwtclaims.Decode(s); err == nil {
			return v, nil
		}
	}
	slog.Error("route misconfigured: no verified claims from jwt-claims",
		slog.String("plugin", plugin), slog.String("error", err.Error()))
	return nil, denial.New(denial.ClaimsMissing, "")
}
