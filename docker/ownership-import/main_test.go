package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/ownership"
	"github.com/subgate/subgate/pkg/redistest"
)

func TestImportAgainstRealRedis(t *testing.T) {
	srv := redistest.Start(t)
	csv := "country,subscription_id,customer_uuid\nDE,10,7d3e2a10-1c4b-4a5e-9f00-3c2b1a000001\nDE,x,7d3e2a10-1c4b-4a5e-9f00-3c2b1a000001\n"
	var out, errs bytes.Buffer
	code := run([]string{"-redis", srv.Addr, "-"}, strings.NewReader(csv), &out, &errs)
	if code != 1 || !strings.Contains(out.String(), "written: 1") || !strings.Contains(out.String(), "line 3:") {
		t.Fatalf("code %d\n%s\n%s", code, out.String(), errs.String())
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	u, _ := ownership.ParseUUID("7d3e2a10-1c4b-4a5e-9f00-3c2b1a000001")
	if ok, err := ownership.NewStore(rdb, "").Owns(context.Background(), "DE", 10, u); !ok || err != nil {
		t.Fatalf("imported pair not found: %v", err)
	}
	out.Reset()
	if code := run([]string{"-redis", srv.Addr, "-"}, strings.NewReader("DE,11,7d3e2a10-1c4b-4a5e-9f00-3c2b1a000001\n"), &out, &errs); code != 0 {
		t.Fatalf("clean import exit %d: %s", code, out.String())
	}
	srv.Stop()
	if code := run([]string{"-redis", srv.Addr, "-timeout", "200ms", "-"}, strings.NewReader("DE,12,7d3e2a10-1c4b-4a5e-9f00-3c2b1a000001\n"), &out, &errs); code != 1 {
		t.Fatal("Redis down but exit 0")
	}
}

func TestSentinelPasswordEnvMustBeSet(t *testing.T) {
	t.Setenv("SUBGATE_TEST_UNSET_PASSWORD", "")
	var out, errs bytes.Buffer
	code := run([]string{"-sentinel-master", "m", "-redis", "127.0.0.1:1", "-sentinel-password-env", "SUBGATE_TEST_UNSET_PASSWORD", "-"},
		strings.NewReader(""), &out, &errs)
	if code != 1 || !strings.Contains(errs.String(), "SUBGATE_TEST_UNSET_PASSWORD") {
		t.Fatalf("code %d, stderr %q", code, errs.String())
	}
}
