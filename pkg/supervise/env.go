package supervise

import (
	"fmt"
	"os"
	"sort"
	"strings"
)

// The environment a plugin server starts with under Kong.
//
// Kong starts each plugin server from an nginx worker
// (kong/runloop/plugin_servers/process.lua: pluginserver_timer runs
// ngx_pipe.spawn("exec " .. server_def.start_command, {merge_stderr = true})
// with no environ option, so the child inherits the worker's environment).
// nginx clears its workers' environment: only TZ and the names declared with
// `env NAME;` or `env NAME=value;` in the main context survive (nginx's
// ngx_set_environment; Kong/kong#6149). Kong's way to declare them is the
// nginx_main_env setting (KONG_NGINX_MAIN_ENV), which
// kong/conf_loader/parse.lua parse_nginx_directives turns into an injected
// main directive written as `env <value>;` (kong/templates/nginx.lua,
// "injected nginx_main_* directives"). Kong's Lua adds no variable of its
// own. ngx.pipe runs a string command as `/bin/sh -c`, and dash (/bin/sh on
// Kong's Debian/Ubuntu images) exports PWD to what it execs; kongsim spawns
// the same way, so PWD appears as it does under Kong.

// ParseMainEnv reads a Kong nginx_main_env value as nginx reads the line
// Kong writes for it, `env <value>;`: directives separated by ";", the first
// being that env, each further one spelled "env NAME" or "env NAME=value".
// "A; env B=x" declares A and B; "A; B" is refused, as nginx refuses the
// unknown directive "B".
func ParseMainEnv(value string) ([]string, error) {
	var out []string
	for i, d := range strings.Split("env "+value, ";") {
		f := strings.Fields(d)
		if len(f) == 0 {
			if i == 0 {
				return nil, fmt.Errorf("nginx_main_env %q: empty env directive", value)
			}
			continue
		}
		if f[0] != "env" {
			return nil, fmt.Errorf("nginx_main_env %q: nginx reads %q as the unknown directive %q (write \"A; env B\")", value, strings.TrimSpace(d), f[0])
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("nginx_main_env %q: invalid number of arguments in \"env\" directive %q", value, strings.TrimSpace(d))
		}
		out = append(out, f[1])
	}
	return out, nil
}

// WorkerEnv is the environment of an nginx worker given the declared
// entries ("NAME" keeps the value lookup finds, "NAME=value" sets it; nginx's
// ngx_set_environment) and TZ, which nginx always keeps. lookup is the
// environment nginx itself was started with (os.LookupEnv for this process).
// The result is sorted.
func WorkerEnv(declared []string, lookup func(string) (string, bool)) ([]string, error) {
	vals := map[string]string{}
	if v, ok := lookup("TZ"); ok {
		vals["TZ"] = v
	}
	for _, d := range declared {
		name, value, set := strings.Cut(d, "=")
		if name == "" || strings.ContainsAny(name, " \t;") {
			return nil, fmt.Errorf("env %q: not a variable name", d)
		}
		if set {
			vals[name] = value
			continue
		}
		if v, ok := lookup(name); ok {
			vals[name] = v
		}
	}
	out := make([]string, 0, len(vals))
	for k, v := range vals {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out, nil
}

// MainEnvFromProcess reads KONG_NGINX_MAIN_ENV from this process, as Kong
// would read it from its own environment, and returns the declared names;
// none when it is unset.
func MainEnvFromProcess() ([]string, error) {
	v, ok := os.LookupEnv("KONG_NGINX_MAIN_ENV")
	if !ok || strings.TrimSpace(v) == "" {
		return nil, nil
	}
	return ParseMainEnv(v)
}
