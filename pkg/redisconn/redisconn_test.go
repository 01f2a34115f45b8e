package redisconn

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"

	"github.com/subgate/subgate/pkg/health"
)

// The Redis password reaches the client from each of its sources, and a
// bad source is refused at instance start naming the field, never the value.
func TestPasswordSources(t *testing.T) {
	m := miniredis.RunT(t)
	m.RequireAuth("pw-0123456789")
	file := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(file, []byte("pw-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SUBGATE_REDISCONN_PW", "pw-0123456789")
	for name, c := range map[string]Config{
		"password":      {Addresses: []string{m.Addr()}, Password: "pw-0123456789"},
		"password_file": {Addresses: []string{m.Addr()}, PasswordFile: file},
		"password_env":  {Addresses: []string{m.Addr()}, PasswordEnv: "SUBGATE_REDISCONN_PW"},
	} {
		rdb, err := c.Client("redis")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := rdb.Ping(context.Background()).Err(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		rdb.Close()
	}
	for name, tc := range map[string]struct {
		c    Config
		want string
	}{
		"two sources":  {Config{Addresses: []string{m.Addr()}, Password: "x", PasswordFile: file}, "only one or none of these fields must be set: 'password', 'password_file', 'password_env'"},
		"missing file": {Config{Addresses: []string{m.Addr()}, PasswordFile: file + ".none"}, "redis.password_file: cannot read " + file + ".none"},
		"unset env":    {Config{Addresses: []string{m.Addr()}, SentinelPasswordEnv: "SUBGATE_REDISCONN_UNSET"}, "redis.sentinel_password_env: environment variable SUBGATE_REDISCONN_UNSET is unset"},
		"no address":   {Config{}, "config.addresses: required field missing"},
	} {
		_, err := Shared(tc.c, "redis")
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "pw-0123456789") {
			t.Errorf("%s: err %v, want %q", name, err, tc.want)
		}
	}
}

// Shared registers the client's readiness check (pkg/health) under a name
// without secrets: it passes while Redis answers and fails when it does not.
func TestSharedClientsReportReadiness(t *testing.T) {
	m := miniredis.RunT(t)
	addr := m.Addr()
	if _, err := Shared(Config{Addresses: []string{addr}, DB: 3, Password: "pw-0123456789"}, "redis"); err != nil {
		t.Fatal(err)
	}
	m.RequireAuth("pw-0123456789")
	find := func() health.Result {
		res, _ := health.Ready(context.Background())
		for _, r := range res {
			if strings.Contains(r.Name, addr) {
				return r
			}
		}
		t.Fatalf("no readiness check for %s in %v", addr, res)
		return health.Result{}
	}
	r := find()
	if r.Err != nil || r.Name != "redis "+addr+" db 3" {
		t.Fatalf("%+v", r)
	}
	m.Close()
	if r := find(); r.Err == nil {
		t.Fatal("a stopped Redis is ready")
	}
}
