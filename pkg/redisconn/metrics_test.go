package redisconn

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"

	"github.com/subgate/subgate/pkg/metrics"
)

// The shared clients' pool stats are exposed per Redis, labelled by
// address and master name only: no password, user name or other setting.
func TestPoolStatsMetrics(t *testing.T) {
	m := miniredis.RunT(t)
	m.RequireUserAuth("svc-user", "pw-0123456789")
	for _, db := range []int{0, 1} { // two clients, one Redis: summed
		rdb, err := Shared(Config{Addresses: []string{m.Addr()}, Username: "svc-user", Password: "pw-0123456789", DB: db}, "redis")
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := rdb.Ping(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A Sentinel client, never used: labelled by its Sentinels and master.
	if _, err := Shared(Config{Addresses: []string{"127.0.0.1:1", "127.0.0.1:2"}, MasterName: "subgate", SentinelPassword: "spw-0123456789"}, "redis"); err != nil {
		t.Fatal(err)
	}
	out := metrics.Exposition()
	if !strings.Contains(out, `subgate_redis_pool_connections{addresses="127.0.0.1:1,127.0.0.1:2",master_name="subgate"} 0`) {
		t.Errorf("no series for the Sentinel client in:\n%s", out)
	}
	if strings.Contains(out, "pw-0123456789") || strings.Contains(out, "svc-user") {
		t.Fatalf("a Redis secret or user name reached the exposition:\n%s", out)
	}
	labels := regexp.QuoteMeta(`{addresses="` + m.Addr() + `",master_name=""}`)
	for _, want := range []string{
		`# TYPE subgate_redis_pool_hits_total counter`,
		`subgate_redis_pool_hits_total` + labels + ` [1-9]`, // second and third pings reuse the connection
		`subgate_redis_pool_misses_total` + labels + ` 2\n`, // one new connection per client
		`subgate_redis_pool_timeouts_total` + labels + ` 0\n`,
		`subgate_redis_pool_stale_connections_total` + labels + ` 0\n`,
		`# TYPE subgate_redis_pool_connections gauge`,
		`subgate_redis_pool_connections` + labels + ` 2\n`,
		`subgate_redis_pool_idle_connections` + labels + ` 2\n`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("no match for %s in:\n%s", want, out)
		}
	}
}
