// Command user-context is the Kong plugin that asks the identity service
// for the caller's user context and forwards it upstream, caching every
// success locally and using the cached copy only when the identity service
// answers 503 (see pkg/usercontext for the full rule).
//
// Allow path: 2 PDK calls (the client's headers, the upstream headers).
package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/Kong/go-pdk"

	"github.com/subgate/subgate/pkg/audit"
	"github.com/subgate/subgate/pkg/buildinfo"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/kongx"
	"github.com/subgate/subgate/pkg/usercontext"
)

// Name is the plugin name (and the binary's file name).
const Name = "user-context"

// Config is the route's plugin configuration; its fields are Kong's schema.
type Config struct {
	IdentityURL           string            `json:"identity_url"`
	Method                string            `json:"method"`
	ForwardHeaders        []string          `json:"forward_headers"`
	AttemptTimeoutMs      int               `json:"attempt_timeout_ms"`
	MaxAttempts           int               `json:"max_attempts"`
	BackoffMs             int               `json:"backoff_ms"`
	DeadlineMs            int               `json:"deadline_ms"`
	MaxStaleSeconds       int               `json:"max_stale_seconds"`
	CacheSize             int               `json:"cache_size"`
	MaxBodyBytes          int               `json:"max_body_bytes"`
	UserIDField           string            `json:"user_id_field"`
	MaxConcurrent         int               `json:"max_concurrent"`
	ConnectionErrorsAs503 bool              `json:"connection_errors_as_503"`
	RetryAfterSeconds     int               `json:"retry_after_seconds"`
	ContextHeader         string            `json:"context_header"`
	MaxContextHeaderBytes int               `json:"max_context_header_bytes"`
	SourceHeader          string            `json:"source_header"`
	FieldHeaders          map[string]string `json:"field_headers"`

	gate *kongx.Gate[*usercontext.Route]
}

// New returns the defaults; Kong's null for an unset field keeps them.
func New() any {
	return &Config{
		Method:                "GET",
		AttemptTimeoutMs:      1000,
		MaxAttempts:           3,
		BackoffMs:             50,
		DeadlineMs:            2000,
		MaxStaleSeconds:       300,
		CacheSize:             10000,
		MaxBodyBytes:          64 << 10,
		UserIDField:           "user_id",
		MaxConcurrent:         256,
		RetryAfterSeconds:     1,
		ContextHeader:         "X-User-Context",
		MaxContextHeaderBytes: 4096,
		SourceHeader:          "X-User-Context-Source",
		gate:                  kongx.Unstarted[*usercontext.Route](Name),
	}
}

// UnmarshalJSON receives Kong's config at instance start and builds the
// decider once; a bad config is logged and denied on every request.
func (c *Config) UnmarshalJSON(b []byte) error {
	type fields Config // same fields without methods: no recursion
	err := json.Unmarshal(b, (*fields)(c))
	c.gate = kongx.Start(Name, b, err, c.build)
	return nil
}

func (c *Config) build() (*usercontext.Route, error) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	cl, err := usercontext.New(usercontext.Options{
		URL: c.IdentityURL, Method: c.Method, ForwardHeaders: c.ForwardHeaders,
		AttemptTimeout: ms(c.AttemptTimeoutMs), MaxAttempts: c.MaxAttempts, Backoff: ms(c.BackoffMs),
		Deadline: ms(c.DeadlineMs), MaxStale: time.Duration(c.MaxStaleSeconds) * time.Second,
		CacheSize: c.CacheSize, MaxBodyBytes: int64(c.MaxBodyBytes), UserIDField: c.UserIDField,
		MaxConcurrent: c.MaxConcurrent, ConnErrorsAs503: c.ConnectionErrorsAs503, RetryAfter: c.RetryAfterSeconds,
	})
	if err != nil {
		return nil, err
	}
	return usercontext.NewRoute(cl, usercontext.RouteOptions{ContextHeader: c.ContextHeader,
		MaxHeaderBytes: c.MaxContextHeaderBytes, SourceHeader: c.SourceHeader, FieldHeaders: c.FieldHeaders})
}

// Access looks the caller up and forwards the context.
func (c *Config) Access(kong *pdk.PDK) {
	c.gate.Run(kong, func(r *usercontext.Route, rec *audit.Record) *denial.Denial {
		headers, err := kong.Request.GetHeaders(-1)
		if err != nil {
			return denial.New(denial.InternalError, "could not read the request headers")
		}
		up, out, den := r.Decide(context.Background(), headers)
		if den != nil {
			return den
		}
		rec.CustomerID = out.UserID
		rec.Add(slog.Bool("served_from_cache", out.FromCache), slog.Int("attempts", out.Attempts))
		if out.FromCache {
			rec.Add(slog.Duration("cache_age", time.Since(out.StoredAt).Round(time.Millisecond)))
		}
		if err := kongx.SetUpstream(kong, r.Owned(), up); err != nil {
			return denial.New(denial.InternalError, "could not set the upstream headers")
		}
		return nil
	})
}

func main() { kongx.Serve(Name, New, buildinfo.PriorityUserContext) }
