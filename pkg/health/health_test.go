package health

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func probe(t *testing.T, path string) (int, string) {
	t.Helper()
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestReadiness(t *testing.T) {
	reset()
	t.Cleanup(reset)
	if s, b := probe(t, "/live"); s != 200 || b != "live\n" {
		t.Fatalf("/live: %d %q", s, b)
	}
	if s, b := probe(t, "/ready"); s != 200 || b != "ready\nok config\n" {
		t.Fatalf("nothing asked yet: %d %q", s, b)
	}
	InstanceStarted(errors.New("config.redis.addresses: required field missing"))
	if s, b := probe(t, "/ready"); s != 503 || !strings.Contains(b, "fail config: 1 instance starts, none without error; last: config.redis.addresses: required field missing") {
		t.Fatalf("every start failed: %d %q", s, b)
	}
	InstanceStarted(nil)
	InstanceStarted(errors.New("another route's bad config"))
	if s, b := probe(t, "/ready"); s != 200 {
		t.Fatalf("one instance started: %d %q", s, b)
	}
	Register("redis a:1", func(context.Context) error { return errors.New("dial tcp a:1: connection refused\nsecond line") })
	Register("stream s", func(context.Context) error { return nil })
	if s, b := probe(t, "/ready"); s != 503 || b != "not ready\nok config\nfail redis a:1: dial tcp a:1: connection refused; second line\nok stream s\n" {
		t.Fatalf("a failing check: %d %q", s, b)
	}
	// A client made anew for the same Redis takes over its check.
	Register("redis a:1", func(context.Context) error { return nil })
	if s, b := probe(t, "/ready"); s != 200 || b != "ready\nok config\nok redis a:1\nok stream s\n" {
		t.Fatalf("replaced check: %d %q", s, b)
	}
	// A hung dependency is bounded by Timeout, not the probe's patience.
	Register("hung", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	if s, b := probe(t, "/ready"); s != 503 || !strings.Contains(b, "fail hung: context deadline exceeded") {
		t.Fatalf("hung check: %d %q", s, b)
	}
}
