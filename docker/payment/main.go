// Command payment is the demo payment service (see demosvc.Payment).
// REDIS names the Redis of the payment events (host:port, default
// 127.0.0.1:6379); with REDIS_MASTER set, REDIS lists Sentinels.
// REDIS_PASSWORD, when set, authenticates to Redis and to the Sentinels
// (the demo gives them one password).
package main

import (
	"log"
	"os"
	"strings"

	"github.com/subgate/subgate/docker/demosvc"
	"github.com/subgate/subgate/pkg/redisconn"
)

func main() {
	redisAddr := os.Getenv("REDIS")
	if redisAddr == "" {
		redisAddr = "127.0.0.1:6379"
	}
	cfg := redisconn.Config{Addresses: strings.Split(redisAddr, ","), MasterName: os.Getenv("REDIS_MASTER"),
		Cluster: os.Getenv("REDIS_CLUSTER") == "1", DialTimeoutMs: 1000, ReadTimeoutMs: 1000}
	if os.Getenv("REDIS_PASSWORD") != "" {
		cfg.PasswordEnv, cfg.SentinelPasswordEnv = "REDIS_PASSWORD", "REDIS_PASSWORD"
	}
	rdb, err := cfg.Client("redis")
	if err != nil {
		log.Fatal(err)
	}
	p, err := demosvc.NewPayment(rdb)
	if err != nil {
		log.Fatal(err)
	}
	demosvc.Serve("payment", p.Handler())
}
