package kongx

import (
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/Kong/go-pdk/server"

	"github.com/subgate/subgate/pkg/audit"
	"github.com/subgate/subgate/pkg/buildinfo"
	"github.com/subgate/subgate/pkg/metrics"
)

// MetricsEnv is the environment variable naming the metrics listen address
// of one plugin server, e.g. SUBGATE_METRICS_JWT_CLAIMS=127.0.0.1:9542.
// Each plugin is its own process, so each has its own address; unset, no
// listener is opened.
func MetricsEnv(plugin string) string {
	return "SUBGATE_METRICS_" + strings.ToUpper(strings.ReplaceAll(plugin, "-", "_"))
}

// Serve is a plugin binary's whole main: it opens the metrics listener when
// configured and hands over to go-pdk's plugin server, which answers Kong
// on <kong-prefix>/<binary name>.socket (or prints the plugin info with -dump).
func Serve(plugin string, constructor func() any, priority int) {
	if addr := os.Getenv(MetricsEnv(plugin)); addr != "" && !slices.Contains(os.Args[1:], "-dump") {
		go func() {
			mux := http.NewServeMux()
			mux.Handle("/metrics", metrics.Handler())
			err := http.ListenAndServe(addr, mux)
			audit.Logger().Error("metrics listener stopped", slog.String("plugin", plugin), slog.String("error", err.Error()))
		}()
	}
	if err := server.StartServer(constructor, buildinfo.Version, priority); err != nil {
		audit.Logger().Error("plugin server stopped", slog.String("plugin", plugin), slog.String("error", err.Error()))
		os.Exit(1)
	}
}
