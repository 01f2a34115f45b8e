// Command subgate-pluginservers starts subgate's plugin servers outside
// Kong and keeps them running, with Kong given only their sockets (see
// pkg/supervise for why: Kong 3.9's Admin API).
package main

import (
	"os"

	"github.com/subgate/subgate/pkg/supervise"
)

func main() { os.Exit(supervise.Main(os.Args[1:], os.Stdout)) }
