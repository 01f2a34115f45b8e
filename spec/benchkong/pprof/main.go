// Command pprof is the subgate plugin with Go's profiler on
// $SUBGATE_PPROF_ADDR (declared to the plugin servers as Kong's
// nginx_main_env would), for `make bench-kong PPROF=addr`: built under the
// name subgate, it replaces the shipped binary for that run only.
package main

import (
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"

	"github.com/subgate/subgate/pkg/chain"
	"github.com/subgate/subgate/pkg/kongx"
)

var plugin = kongx.NewPlugin("subgate", kongx.PrioritySubgate, chain.New)

func main() {
	if addr := os.Getenv("SUBGATE_PPROF_ADDR"); addr != "" {
		runtime.SetMutexProfileFraction(10)
		runtime.SetBlockProfileRate(10000) // one event per 10 µs blocked
		go func() { slog.Error("pprof listener stopped", slog.Any("error", http.ListenAndServe(addr, nil))) }()
	}
	plugin.Serve()
}
