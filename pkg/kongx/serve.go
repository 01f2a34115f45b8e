package kongx

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/Kong/go-pdk/server"

	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/health"
	"github.com/subgate/subgate/pkg/metrics"
)

// metricsAddr is a setting of the plugin server as a whole, so a flag of
// the binary (set in kong.conf's pluginserver_<name>_start_cmd): nginx
// clears the environment of the processes Kong starts.
var metricsAddr = flag.String("metrics-addr", "", "serve Prometheus /metrics, and GET /live and /ready, on this address (host:port); empty: none")

// Serve is a plugin binary's whole main. decl is the plugin's declared
// config (a zero value of its type): -dump prints the Kong schema made from
// it, with every field's attributes (go-pdk's own dump knows field types
// only). Otherwise it opens the metrics listener when asked (with the
// health endpoints, see pkg/health) and hands over to go-pdk's plugin
// server on <kong-prefix>/<binary name>.socket.
func Serve(plugin string, constructor func() any, priority int, decl any) {
	flag.Parse() // go-pdk's flags (-kong-prefix, -dump) and ours
	if f := flag.Lookup("dump"); f != nil && f.Value.String() == "true" {
		if err := Dump(os.Stdout, constructor, priority, decl); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	metrics.SetBuildInfo(plugin, Version)
	if *metricsAddr != "" {
		go func() {
			mux := http.NewServeMux()
			mux.Handle("/metrics", metrics.Handler())
			health.Add(mux) // GET /live, GET /ready: for probes and for whatever supervises the server
			err := http.ListenAndServe(*metricsAddr, mux)
			slog.Error("metrics listener stopped", slog.String("plugin", plugin), slog.String("error", err.Error()))
		}()
	}
	if err := server.StartServer(constructor, Version, priority); err != nil {
		slog.Error("plugin server stopped", slog.String("plugin", plugin), slog.String("error", err.Error()))
		os.Exit(1)
	}
}

// Dump writes the plugin info as go-pdk's -dump does (the JSON shape
// Kong's plugin_servers/process.lua reads), with the declared schema.
func Dump(w io.Writer, constructor func() any, priority int, decl any) error {
	prefix := "/usr/local/kong"
	if f := flag.Lookup("kong-prefix"); f != nil {
		prefix = f.Value.String()
	}
	// go-pdk names the plugin and its socket after the executable.
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	name := filepath.Base(exe)
	info := map[string]any{
		"Protocol":   "ProtoBuf:1",
		"SocketPath": filepath.Join(prefix, name+".socket"),
		"Plugins": []map[string]any{{
			"Name":     name,
			"Phases":   phases(constructor()),
			"Version":  Version,
			"Priority": priority,
			"Schema":   PluginSchema(name, decl),
		}},
	}
	return json.NewEncoder(w).Encode(info)
}

// Protocols are the route protocols the plugins serve: HTTP only. A
// denial is a JSON body, which a gRPC client cannot read (Kong's own
// authentication plugins also allow grpc and grpcs).
var Protocols = []string{"http", "https"}

// PluginSchema is the schema Kong loads for the plugin: the protocols it
// accepts and its config record. Kong refuses a plugin entity naming any
// other protocol (Kong's typedefs.protocols_http is the same field with
// grpc and grpcs allowed).
func PluginSchema(plugin string, decl any) map[string]any {
	protocols := map[string]any{"type": "set", "required": true, "default": Protocols,
		"elements": map[string]any{"type": "string", "one_of": Protocols}}
	return map[string]any{"name": plugin, "fields": []map[string]any{{"protocols": protocols}, {"config": config.Schema(decl)}}}
}

// phases lists the handlers the config type has, as go-pdk reports them.
func phases(cfg any) []string {
	var out []string
	t := reflect.TypeOf(cfg)
	for _, m := range []string{"Certificate", "Rewrite", "Access", "Response", "Preread", "Log"} {
		if _, ok := t.MethodByName(m); ok {
			out = append(out, strings.ToLower(m))
		}
	}
	return out
}
