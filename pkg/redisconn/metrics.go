package redisconn

import (
	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/metrics"
)

// The connection pools of the shared (request-path) clients, as go-redis
// counts them, summed per Redis (addresses and master name). Followers'
// own clients (Config.Client) are not included.
func init() {
	labels := []string{"addresses", "master_name"}
	type pool struct{ addresses, master string }
	register := func(reg func(string, string, []string, func(func(float64, ...string))), name, help string, get func(*redis.PoolStats) uint32) {
		reg(name, help, labels, func(emit func(float64, ...string)) {
			sums := map[pool]float64{}
			Each(func(addresses, master string, c redis.UniversalClient) {
				sums[pool{addresses, master}] += float64(get(c.PoolStats()))
			})
			for p, v := range sums {
				emit(v, p.addresses, p.master)
			}
		})
	}
	register(metrics.RegisterCounterFunc, "subgate_redis_pool_hits_total",
		"Times a free connection was found in a shared Redis client's pool.", func(s *redis.PoolStats) uint32 { return s.Hits })
	register(metrics.RegisterCounterFunc, "subgate_redis_pool_misses_total",
		"Times no free connection was in the pool and one had to be made or waited for.", func(s *redis.PoolStats) uint32 { return s.Misses })
	register(metrics.RegisterCounterFunc, "subgate_redis_pool_timeouts_total",
		"Times a command waited for a pool connection longer than the pool timeout.", func(s *redis.PoolStats) uint32 { return s.Timeouts })
	register(metrics.RegisterCounterFunc, "subgate_redis_pool_stale_connections_total",
		"Stale connections removed from the pool.", func(s *redis.PoolStats) uint32 { return s.StaleConns })
	register(metrics.RegisterGaugeFunc, "subgate_redis_pool_connections",
		"Connections in the pool, idle and in use.", func(s *redis.PoolStats) uint32 { return s.TotalConns })
	register(metrics.RegisterGaugeFunc, "subgate_redis_pool_idle_connections",
		"Idle connections in the pool.", func(s *redis.PoolStats) uint32 { return s.IdleConns })
}
