// Package kongx is the one adapter between the Kong PDK and subgate's
// checks: it runs any check.Decider as a Kong plugin. It starts a plugin
// instance from Kong's config, reads what the check reads, runs the access
// phase under a panic guard, answers denials in the one error shape, writes
// the audit line and metrics, and moves the shared claims and upstream
// headers in as few PDK calls as possible. Every PDK call is a round trip
// to Kong; the comments say how many each step costs. It knows no check.
package kongx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/Kong/go-pdk"

	"github.com/subgate/subgate/pkg/check"
	"github.com/subgate/subgate/pkg/claims"
	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/health"
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

// Plugin is one plugin binary: its name (the binary's file name), its
// priority, and how its check is built from its declared config C.
type Plugin[C any, D check.Decider] struct {
	Name     string
	Priority int
	build    func(C) (D, error)
}

// NewPlugin declares a plugin; build is the check's constructor.
func NewPlugin[C any, D check.Decider](name string, priority int, build func(C) (D, error)) *Plugin[C, D] {
	return &Plugin[C, D]{Name: name, Priority: priority, build: build}
}

// Serve is the binary's whole main (see Serve), or -check's.
func (p *Plugin[C, D]) Serve() {
	flag.Parse()
	if *checkMode {
		os.Exit(p.checkMain(os.Stdin, os.Stdout))
	}
	var decl C
	Serve(p.Name, p.New, p.Priority, decl)
}

// New is the constructor go-pdk calls for every instance: the declared
// defaults, and, until Kong's config has been decoded into it, a denial of
// every request as misconfigured.
func (p *Plugin[C, D]) New() any {
	i := &Instance[C, D]{plugin: p, logging: config.LogDeny, err: fmt.Errorf("%s: configuration was never decoded", p.Name)}
	config.Defaults(&i.config)
	return i
}

// Instance is one plugin instance: the config Kong sent for one route and
// the decider built from it, or the reason it could not be built. go-pdk
// keeps the instance for its lifetime, so the decider's caches live as long
// as the route's configuration does.
type Instance[C any, D check.Decider] struct {
	plugin  *Plugin[C, D]
	config  C
	meta    Meta
	logging string // log_decisions
	route   string // the metrics' route label
	decider D
	err     error
	// consumers caches the Kong consumers the decisions named.
	consumers consumers
}

// UnmarshalJSON receives Kong's config at instance start (go-pdk decodes
// it into the value New returned, which holds the defaults): it decodes
// and validates the config (every problem at once) and builds the decider.
// A bad config is logged now, at instance start, and denied with 500
// plugin_misconfigured on every request, never let through; the error is
// not returned, or go-pdk would drop the connection.
func (i *Instance[C, D]) UnmarshalJSON(raw []byte) error {
	_ = json.Unmarshal(raw, &i.meta) // metadata is optional; a test may send none
	i.route = metrics.RouteLabel(i.meta.InstanceName, i.meta.RouteID, i.meta.ServiceID)
	metrics.InstanceStarted(i.plugin.Name, i.route)
	if i.err = config.Decode(raw, &i.config); i.err == nil {
		i.decider, i.err = i.plugin.build(i.config)
	}
	if l, ok := any(&i.config).(interface{ DecisionLogging() string }); ok && l.DecisionLogging() != "" {
		i.logging = l.DecisionLogging()
	}
	health.InstanceStarted(i.err)
	if i.err != nil {
		slog.Error("plugin misconfigured: every request on this route will be denied",
			slog.String("plugin", i.plugin.Name), slog.String("route_id", i.meta.RouteID),
			slog.String("instance", i.meta.InstanceName), slog.String("error", i.err.Error()))
	}
	return nil
}

// Err is the configuration error, nil when the instance is usable.
func (i *Instance[C, D]) Err() error { return i.err }

// Config is the config as decoded, defaults filled.
func (i *Instance[C, D]) Config() C { return i.config }

// Decider returns the built decider (for tests and benchmarks).
func (i *Instance[C, D]) Decider() D { return i.decider }

// Access decides the request: it reads what the decider reads (one PDK
// call each for the headers, the claims and, when a check reads it, the
// path), asks the decider,
// stores the claims it verified for the plugins after it (one call; only
// jwt-claims establishes them) and sets the owned upstream headers (one
// call, when the route owns any). A decision that authenticates the caller
// adds kong.client.authenticate, and kong.client.load_consumer for a
// consumer not cached (see authenticate).
func (i *Instance[C, D]) Access(kong *pdk.PDK) {
	i.run(kong, func(audit *check.Audit) *denial.Denial {
		req, den := read(kong, i.decider.Reads(), i.plugin.Name)
		if den != nil {
			hideCredentials(kong, i.decider)
			return den
		}
		if req.Claims != nil {
			audit.CustomerID = req.Claims.CustomerID
		}
		if req.Preflight && req.Claims == nil && i.decider.Reads()&(check.Claims|check.OptionalClaims) != 0 {
			// jwt-claims let this preflight through: so does every check after it.
			audit.Add(slog.Bool("preflight", true))
			return upstreamOrDeny(setUpstream(kong, i.decider.Owned(), nil))
		}
		carried := carriesCredentials(i.decider, req.Headers) // before Decide: pkg/chain removes owned headers as it goes
		d, den := i.decider.Decide(context.Background(), req, audit)
		if den != nil {
			if carried {
				hideCredentials(kong, i.decider)
			}
			return den
		}
		if d.Preflight {
			if err := passPreflight(kong); err != nil {
				return denial.New(denial.InternalError, "could not mark the preflight for the plugins after this one")
			}
			return upstreamOrDeny(setUpstream(kong, i.decider.Owned(), nil))
		}
		if d.Authenticate != nil {
			if d.Upstream == nil {
				d.Upstream = map[string]string{}
			}
			if den := i.authenticate(kong, d.Authenticate, d.Upstream, audit); den != nil {
				return den
			}
		}
		if d.Claims != nil {
			if err := storeClaims(kong, d.Claims); err != nil {
				return denial.New(denial.InternalError, "could not store the verified claims")
			}
		}
		return upstreamOrDeny(setUpstream(kong, i.decider.Owned(), d.Upstream))
	})
}

func upstreamOrDeny(err error) *denial.Denial {
	if err != nil {
		return denial.New(denial.InternalError, "could not set the upstream headers")
	}
	return nil
}

// run runs one phase: decide returns nil to let the request through or a
// denial. run answers the denial (see deny), recovers a panic into a 500 (a
// panic would otherwise kill the plugin server and every request on it),
// hands the decision to Kong's log serializer as log_decisions says, and
// writes the audit line and metrics for every outcome.
//
// PDK calls added to decide's: none on an allow by default (one with
// log_decisions all); on a denial, Kong's request id, the serialized
// decision (unless none), an operator line when the denial needs action
// (rate-limited), and the exit.
func (i *Instance[C, D]) run(kong *pdk.PDK, decide func(audit *check.Audit) *denial.Denial) {
	start := time.Now()
	plugin := i.plugin.Name
	rec := &Record{Plugin: plugin, RouteID: i.meta.RouteID, ServiceID: i.meta.ServiceID, Instance: i.meta.InstanceName}
	defer func() {
		if p := recover(); p != nil {
			slog.Error("panic in plugin handler; request denied",
				slog.String("plugin", plugin), slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
			i.deny(kong, rec, start, denial.New(denial.InternalError, "").WithCause(fmt.Sprintf("recovered panic: %v", p)))
		}
		if rec.Latency == 0 {
			rec.Latency = time.Since(start)
		}
		logRecord(rec)
		decision := "allow"
		if !rec.Allowed {
			decision = "deny"
		}
		metrics.Decisions.Inc(plugin, i.route, decision, string(rec.Code))
		metrics.Latency.Observe(rec.Latency, plugin, i.route)
	}()
	if i.err != nil {
		i.deny(kong, rec, start, denial.New(denial.PluginMisconfigured, "").WithCause("configuration refused at instance start: "+i.err.Error()))
		return
	}
	if d := decide(&rec.Audit); d != nil {
		i.deny(kong, rec, start, d)
		return
	}
	rec.Allowed = true
	if i.logging == config.LogAll {
		rec.Latency = time.Since(start)
		serialize(kong, rec)
	}
}

// deny measures the latency before answering: in Kong's access phase
// kong.response.exit does not return to the plugin until Kong has finished
// the request, so time spent after it is Kong's, not ours. Everything Kong
// must see comes before the exit: after it Kong never resumes the plugin.
func (i *Instance[C, D]) deny(kong *pdk.PDK, rec *Record, start time.Time, d *denial.Denial) {
	rec.Allowed = false
	rec.Code, rec.Status, rec.Cause = d.Code, d.Status, d.Cause
	rec.Latency = time.Since(start)
	rec.RequestID = requestID(kong)
	operatorLine(kong, rec)
	if i.logging != config.LogNone {
		serialize(kong, rec)
	}
	kong.Response.Exit(d.Status, d.Body(rec.RequestID), d.Headers())
}

// requestID is Kong's own request id (the nginx variable kong_request_id,
// the X-Kong-Request-Id Kong sends and logs; one PDK call, on denials
// only). Should Kong not answer, a random id still lets the audit line and
// the body be joined.
func requestID(kong *pdk.PDK) string {
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

// read reads what a decider reads, in this order: every request header in
// one PDK call (kong.request.get_headers; names lower-cased, values in
// order), the verified claims (one call); the normalized path (one call)
// is left to the first check that reads it (check.Request.ReadPath).
// A request whose header lines reach maxHeaders may have been cut short,
// and a second token header past the cut would reach the upstream
// unchecked: it is refused (431), never decided on part of its headers. A
// header value or decoded path that is not UTF-8 cannot be read at all
// (bytes.go): 400.
func read(kong *pdk.PDK, reads check.Reads, plugin string) (*check.Request, *denial.Denial) {
	req := &check.Request{}
	if reads&(check.Headers|check.Preflight) != 0 {
		h, err := kong.Request.GetHeaders(maxHeaders)
		if notUTF8(err) {
			return nil, badHeaders(kong)
		}
		if err != nil {
			return nil, denial.New(denial.InternalError, "could not read the request headers").WithCause(err.Error())
		}
		if den := checkHeaderCount(h); den != nil {
			return nil, den
		}
		req.Headers = h
		if reads&check.Preflight != 0 {
			if req.Preflight, err = isPreflight(kong, h); err != nil {
				return nil, denial.New(denial.InternalError, "could not read the request method")
			}
		}
	}
	if reads&check.Path != 0 {
		req.LoadPath = func() (string, *denial.Denial) { return readPath(kong) }
	}
	if reads&(check.Claims|check.OptionalClaims) != 0 {
		v, passed, den := loadClaims(kong, plugin, reads&check.Claims == 0)
		if den != nil {
			return nil, den
		}
		req.Claims, req.Preflight = v, passed
	}
	return req, nil
}

// readPath reads the normalized path (one PDK call), when a check first
// asks for it (check.Request.ReadPath).
func readPath(kong *pdk.PDK) (string, *denial.Denial) {
	path, err := kong.Request.GetPath()
	if notUTF8(err) {
		return "", badPath(kong)
	}
	if err != nil {
		return "", denial.New(denial.InternalError, "could not read the request path").WithCause(err.Error())
	}
	return path, nil
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

// setUpstream sets the gateway-owned upstream headers in one PDK call
// (kong.service.request.set_headers), none when the route owns none. Every
// name in owned is overwritten: with its value where values has a
// non-empty one, otherwise removed (an empty list clears a header in
// Kong), so a client's copy of an owned header never reaches the upstream.
func setUpstream(kong *pdk.PDK, owned []string, values map[string]string) error {
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

// credentialed is a decider whose route carries a credential in headers
// Kong's log serializer logs (it redacts Authorization only): they are
// among Owned, so the allow path removes them, and a denial removes them
// too (one PDK call, only when the request carries one), so that no log
// entry holds them, whoever's they are.
type credentialed interface{ Credentials() []string }

func carriesCredentials(d check.Decider, h map[string][]string) bool {
	c, ok := d.(credentialed)
	if !ok {
		return false
	}
	for _, name := range c.Credentials() {
		if len(h[strings.ToLower(name)]) > 0 { // Kong's table: names lower-cased
			return true
		}
	}
	return false
}

// hideCredentials removes the credential headers from the request (one
// PDK call, none for a decider without any). A request whose headers could
// not be read has them removed without looking.
func hideCredentials(kong *pdk.PDK, d check.Decider) {
	c, ok := d.(credentialed)
	if !ok || len(c.Credentials()) == 0 {
		return
	}
	if err := setUpstream(kong, c.Credentials(), nil); err != nil {
		slog.Warn("could not remove the credential headers from a denied request", slog.String("error", err.Error()))
	}
}

// storeClaims puts the verified claims in kong.ctx.shared (one PDK call).
func storeClaims(kong *pdk.PDK, v *claims.Verified) error {
	s, err := claims.Encode(v)
	if err != nil {
		return err
	}
	return kong.Ctx.SetShared(claims.SharedKey, s)
}

// loadClaims reads the verified claims (one PDK call). When there are none
// it returns a claims_missing denial and logs that the route is
// misconfigured: a plugin that needs claims never falls back to headers.
// With optional, none (the route runs no jwt-claims) is nil, no denial;
// a value that does not decode is still refused.
// passed reports a preflight an earlier plugin let through (preflightMarker).
func loadClaims(kong *pdk.PDK, plugin string, optional bool) (_ *claims.Verified, passed bool, _ *denial.Denial) {
	raw, err := kong.Ctx.GetSharedAny(claims.SharedKey)
	s, _ := raw.(string)
	if optional && err == nil && s == "" {
		return nil, false, nil
	}
	if err == nil && s == preflightMarker {
		return nil, true, nil
	}
	if err == nil {
		var v *claims.Verified
		if v, err = claims.Decode(s); err == nil {
			return v, false, nil
		}
	}
	slog.Error("route misconfigured: no verified claims from jwt-claims",
		slog.String("plugin", plugin), slog.String("error", err.Error()))
	return nil, false, denial.New(denial.ClaimsMissing, "")
}
