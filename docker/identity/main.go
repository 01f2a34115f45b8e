// Command identity is the demo identity service (see demosvc.Identity).
// With REDIS set (host:port; with REDIS_MASTER set, REDIS lists Sentinels)
// it publishes identity events there; REDIS_PASSWORD, when set,
// authenticates to Redis and to the Sentinels.
package main

import (
	"log"
	"os"
	"strings"

	"github.com/subgate/subgate/docker/demosvc"
	"github.com/subgate/subgate/pkg/redisconn"
)

func main() {
	id, err := demosvc.NewIdentity()
	if err != nil {
		log.Fatal(err)
	}
	if addr := os.Getenv("REDIS"); addr != "" {
		cfg := redisconn.Config{Addresses: strings.Split(addr, ","), MasterName: os.Getenv("REDIS_MASTER"),
			DialTimeoutMs: 1000, ReadTimeoutMs: 1000}
		if os.Getenv("REDIS_PASSWORD") != "" {
			cfg.PasswordEnv, cfg.SentinelPasswordEnv = "REDIS_PASSWORD", "REDIS_PASSWORD"
		}
		rdb, err := cfg.Client("redis")
		if err != nil {
			log.Fatal(err)
		}
		if err := id.PublishEvents(rdb); err != nil {
			log.Fatal(err)
		}
	}
	demosvc.Serve("identity", id.Handler())
}
