// Command ownership-import backfills subscription → customer pairs into
// Redis from a CSV file ("country,subscription_id,customer_uuid", header
// optional) through pkg/ownership, the same layout the plugin reads. It
// prints the rows written and every rejected line, and exits 1 when a row
// was rejected or Redis failed, 0 otherwise. The demo's seeding step uses it.
//
//	ownership-import -redis 127.0.0.1:6379 [-prefix subgate:own:] [-password-env REDIS_PASSWORD] file.csv
//	ownership-import -redis ... -          # CSV on standard input
//	ownership-import -sentinel-master mymaster -redis s1:26379,s2:26379 [-sentinel-password-env SENTINEL_PASSWORD] file.csv
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/subgate/subgate/pkg/ownership"
	"github.com/subgate/subgate/pkg/redisconn"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ownership-import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addrs := fs.String("redis", "127.0.0.1:6379", "Redis address(es), comma-separated: one node, Sentinels (-sentinel-master) or Cluster seeds (-cluster)")
	cluster := fs.Bool("cluster", false, "the addresses are Redis Cluster seed nodes")
	master := fs.String("sentinel-master", "", "Sentinel master name")
	prefix := fs.String("prefix", ownership.DefaultPrefix, "key prefix (as the plugin's key_prefix)")
	pwEnv := fs.String("password-env", "", "environment variable holding the Redis password")
	sentinelPwEnv := fs.String("sentinel-password-env", "", "environment variable holding the Sentinels' password (their requirepass)")
	timeout := fs.Duration("timeout", 2*time.Second, "per-command timeout")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: ownership-import [flags] FILE.csv|-")
		return 2
	}
	in := stdin
	if name := fs.Arg(0); name != "-" {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer f.Close()
		in = f
	}
	ms := int(timeout.Milliseconds())
	rdb, err := redisconn.Config{Addresses: strings.Split(*addrs, ","), MasterName: *master, Cluster: *cluster,
		PasswordEnv: *pwEnv, SentinelPasswordEnv: *sentinelPwEnv, DialTimeoutMs: ms, ReadTimeoutMs: ms, MaxRetries: 3}.Client("redis")
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	rep, err := ownership.NewStore(rdb, *prefix).Import(context.Background(), in)
	fmt.Fprintf(stdout, "written: %d\nrejected: %d\n", rep.Written, len(rep.Rejected))
	for _, r := range rep.Rejected {
		fmt.Fprintf(stdout, "  line %d: %s\n", r.Line, r.Reason)
	}
	if err != nil {
		fmt.Fprintf(stderr, "redis: %v (rows written before the failure stay written; rerunning is safe)\n", err)
		return 1
	}
	if len(rep.Rejected) > 0 {
		return 1
	}
	return 0
}
