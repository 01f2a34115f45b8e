package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// pluginsEnv is kong/plugins.env: the plugin-server settings the deployment
// hands Kong (KONG_*) and the supervisor (SUBGATE_PLUGINSERVER_*).
type pluginsEnv struct {
	file  string
	vars  map[string]string
	names []string // KONG_PLUGINSERVER_NAMES
}

// readEnvFile reads an env file as `kubectl create configmap
// --from-env-file` does (k8s.io/kubectl pkg/cmd/util/env_file.go): leading
// space trimmed, blank and # lines skipped, KEY=VALUE split at the first
// "=", the value verbatim.
func readEnvFile(file string) (*pluginsEnv, error) {
	text, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	p := &pluginsEnv{file: file, vars: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(bytes.TrimPrefix(text, []byte("\xEF\xBB\xBF"))))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimLeftFunc(sc.Text(), unicode.IsSpace)
		if line == "" || line[0] == '#' {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if msgs := validation.IsEnvVarName(key); len(msgs) > 0 {
			return nil, fmt.Errorf("%s:%d: %q is not a valid key name: %s", file, n, key, strings.Join(msgs, "; "))
		}
		if !ok {
			return nil, fmt.Errorf("%s:%d: %s has no value (kubectl would take it from its own environment)", file, n, key)
		}
		p.vars[key] = value
	}
	for _, n := range strings.Split(p.vars["KONG_PLUGINSERVER_NAMES"], ",") {
		if n = strings.TrimSpace(n); n != "" {
			p.names = append(p.names, n)
		}
	}
	return p, sc.Err()
}

// serverVar is Kong's name for a plugin server's settings
// (kong/conf_loader: "pluginserver_" .. name:gsub("-", "_"), upper-cased
// in the environment).
func serverVar(name string) string { return strings.ToUpper(strings.ReplaceAll(name, "-", "_")) }

// kongStartsServers says whether plugins.env is still in the layout where
// Kong starts the plugin servers itself (KONG_PLUGINSERVER_*_START_CMD and
// no SUBGATE_PLUGINSERVER_*_START_CMD), from before subgate-pluginservers.
func (p *pluginsEnv) kongStartsServers() bool {
	kong := false
	for _, n := range p.names {
		if _, ok := p.vars["SUBGATE_PLUGINSERVER_"+serverVar(n)+"_START_CMD"]; ok {
			return false
		}
		_, ok := p.vars["KONG_PLUGINSERVER_"+serverVar(n)+"_START_CMD"]
		kong = kong || ok
	}
	return kong
}

// envValue is a container's environment variable as Kubernetes sets it.
type envValue struct {
	value  string // a literal value, or the ConfigMap key's
	source string // "" (literal), "ConfigMap NAME" or "Secret NAME"
}

// containerEnv is a container's environment: envFrom in order, then env,
// which wins (Kubernetes' rule). configMaps: namespace/name -> data.
func containerEnv(c *corev1.Container, ns string, configMaps map[string]map[string]string, r refs) map[string]envValue {
	env := map[string]envValue{}
	for _, e := range c.EnvFrom {
		if e.ConfigMapRef != nil {
			for k, v := range configMaps[ns+"/"+e.ConfigMapRef.Name] {
				env[e.Prefix+k] = envValue{v, "ConfigMap " + e.ConfigMapRef.Name}
			}
		}
		if e.SecretRef != nil {
			for k := range r[refKey("Secret", ns, e.SecretRef.Name)] {
				env[e.Prefix+k] = envValue{"", "Secret " + e.SecretRef.Name}
			}
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = envValue{e.Value, ""}
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = envValue{"", "Secret " + e.ValueFrom.SecretKeyRef.Name}
		case e.ValueFrom.ConfigMapKeyRef != nil:
			s := e.ValueFrom.ConfigMapKeyRef
			env[e.Name] = envValue{configMaps[ns+"/"+s.Name][s.Key], "ConfigMap " + s.Name}
		default:
			env[e.Name] = envValue{"", "field"}
		}
	}
	return env
}

// supervisorCommand is the command name of subgate-pluginservers.
const supervisorCommand = "subgate-pluginservers"

func argv(c *corev1.Container) []string { return append(append([]string{}, c.Command...), c.Args...) }

// wiring is what checkSubgate needs besides the pod: plugins.env, the
// ConfigMaps' data, and the env vault variables the plugin configs reference.
type wiring struct {
	env        *pluginsEnv
	configMaps map[string]map[string]string
	refs       refs
	vaultVars  map[string]string // variable -> where a config references it
}

// checkSubgate checks the subgate wiring (README, "Kubernetes") of a pod
// with a Kong container (the chart names it proxy): Kong's container and one subgate-pluginservers sidecar from the same
// image, sharing an emptyDir at the socket directory; the sidecar probed on
// its supervisor's health address, declaring each plugin server's metrics
// port; both given kong/plugins.env's settings, Kong none that would make it
// start plugin servers itself; secrets only in Kong's container, and every
// env vault variable a plugin config references among them, from a Secret.
func checkSubgate(o *object, spec *corev1.PodSpec, w wiring) []string {
	var errs []string
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Sprintf("%s: %s %s: ", o.src, o.gvk.Kind, o.name)+fmt.Sprintf(format, args...))
	}
	var proxy, sidecar *corev1.Container
	native := false
	all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	for i := range all {
		c := &all[i]
		if c.Name == "proxy" && i >= len(spec.InitContainers) {
			proxy = c
		}
		for _, a := range argv(c) {
			if filepath.Base(a) == supervisorCommand {
				if sidecar != nil {
					bad("containers %q and %q both run %s: two sets of plugin servers on one socket directory", sidecar.Name, c.Name, supervisorCommand)
				}
				sidecar = c
				native = i < len(spec.InitContainers)
				break
			}
		}
	}
	if sidecar == nil {
		bad("no container runs %s: Kong would dial plugin-server sockets nobody serves", supervisorCommand)
		return errs
	}
	where := fmt.Sprintf("container %q", sidecar.Name)
	if native && (sidecar.RestartPolicy == nil || *sidecar.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
		bad("%s: an init container that never exits holds the pod back: set restartPolicy: Always (a native sidecar)", where)
	}
	if sidecar.Image != proxy.Image {
		bad("%s: image %s differs from Kong's %s: Kong queries its own copy of each plugin binary (-dump) for the schema the sidecar's copy must serve", where, sidecar.Image, proxy.Image)
	}
	args := argv(sidecar)
	healthPort := ""
	for i, a := range args {
		switch {
		case a == "--":
			bad("%s: %q runs a command after the plugin servers (a second Kong); the sidecar runs the supervisor alone", where, strings.Join(args, " "))
		case a == "-health-addr" || a == "--health-addr":
			if i+1 < len(args) {
				healthPort = portOf(args[i+1])
			}
		case strings.HasPrefix(a, "-health-addr=") || strings.HasPrefix(a, "--health-addr="):
			healthPort = portOf(a[strings.Index(a, "=")+1:])
		}
	}
	ports := map[string]int32{}
	declared := map[string]bool{}
	for _, p := range sidecar.Ports {
		if p.Name != "" {
			ports[p.Name] = p.ContainerPort
		}
		declared[fmt.Sprint(p.ContainerPort)] = true
	}
	if healthPort == "" {
		bad("%s: no -health-addr HOST:PORT: the probes have nothing to ask", where)
	} else {
		probes := []struct {
			kind, path string
			p          *corev1.Probe
			required   bool
		}{
			{"startupProbe", "/ready", sidecar.StartupProbe, native},
			{"readinessProbe", "/ready", sidecar.ReadinessProbe, true},
			{"livenessProbe", "/live", sidecar.LivenessProbe, true},
		}
		for _, pr := range probes {
			if pr.p == nil {
				if pr.required {
					why := ""
					if pr.kind == "startupProbe" {
						why = "; without it Kubernetes starts Kong before the plugin servers accept connections"
					}
					bad("%s: %s: required (GET %s on the -health-addr port %s)%s", where, pr.kind, pr.path, healthPort, why)
				}
				continue
			}
			if pr.p.HTTPGet == nil {
				bad("%s: %s: want httpGet %s on port %s", where, pr.kind, pr.path, healthPort)
				continue
			}
			n, err := resolvePort(pr.p.HTTPGet.Port, ports)
			if err == nil && fmt.Sprint(n) != healthPort {
				bad("%s: %s: port %s is not the -health-addr port %s", where, pr.kind, pr.p.HTTPGet.Port.String(), healthPort)
			}
			if pr.p.HTTPGet.Path != pr.path {
				bad("%s: %s: path %q: the supervisor answers %s there", where, pr.kind, pr.p.HTTPGet.Path, pr.path)
			}
		}
	}

	// Secrets stay in Kong's container: the plugin servers never read one.
	sidecarEnv := containerEnv(sidecar, o.ns, w.configMaps, w.refs)
	for _, k := range sortedKeys(sidecarEnv) {
		if strings.HasPrefix(sidecarEnv[k].source, "Secret ") {
			bad("%s: env %s comes from %s: the plugin servers need no secret (Kong resolves vault references before a config reaches them)", where, k, sidecarEnv[k].source)
		}
	}
	proxyEnv := containerEnv(proxy, o.ns, w.configMaps, w.refs)
	for _, v := range sortedKeys(w.vaultVars) {
		e, ok := proxyEnv[v]
		switch {
		case !ok:
			bad("container \"proxy\": no env %s, which %s references ({vault://env/...}): Kong's env vault would find nothing and the plugin would fail every request", v, w.vaultVars[v])
		case e.source == "":
			bad("container \"proxy\": env %s, which %s references, is a literal value: keep a secret in a Secret (secretKeyRef)", v, w.vaultVars[v])
		case !strings.HasPrefix(e.source, "Secret "):
			bad("container \"proxy\": env %s, which %s references, comes from %s: keep a secret in a Secret (secretKeyRef)", v, w.vaultVars[v], e.source)
		}
	}

	if w.env == nil {
		return errs
	}
	p := w.env
	// The settings of kong/plugins.env reach both containers unchanged.
	sidecarKeys := map[string]bool{"KONG_PLUGINSERVER_NAMES": true, "KONG_NGINX_MAIN_ENV": true}
	for _, n := range p.names {
		v := serverVar(n)
		sidecarKeys["KONG_PLUGINSERVER_"+v+"_SOCKET"] = true
		sidecarKeys["SUBGATE_PLUGINSERVER_"+v+"_START_CMD"] = true
		if _, ok := proxyEnv["KONG_PLUGINSERVER_"+v+"_START_CMD"]; ok {
			bad("container \"proxy\": KONG_PLUGINSERVER_%s_START_CMD is set: Kong would start %s itself beside the sidecar's (and Kong 3.9's Admin API answers GET / with 500 while it does)", v, n)
		}
	}
	for _, k := range sortedKeys(p.vars) {
		if strings.HasPrefix(k, "KONG_") {
			if e := proxyEnv[k]; e.value != p.vars[k] {
				bad("container \"proxy\": env %s is %q, %s says %q", k, e.value, p.file, p.vars[k])
			}
		}
		if sidecarKeys[k] {
			if e := sidecarEnv[k]; e.value != p.vars[k] {
				bad("%s: env %s is %q, %s says %q", where, k, e.value, p.file, p.vars[k])
			}
		}
	}
	// Both containers mount one emptyDir at each socket directory.
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	dirs := map[string]bool{}
	for _, n := range p.names {
		if s := p.vars["KONG_PLUGINSERVER_"+serverVar(n)+"_SOCKET"]; s != "" {
			dirs[filepath.Dir(s)] = true
		}
	}
	for _, d := range sortedKeys(dirs) {
		pm, sm := mountOf(proxy, d), mountOf(sidecar, d)
		switch {
		case pm == nil:
			bad("container \"proxy\": nothing mounted at %s, where Kong dials the plugin servers' sockets (%s)", d, p.file)
		case sm == nil:
			bad("%s: nothing mounted at %s, where the plugin servers create their sockets (%s)", where, d, p.file)
		case pm.Name != sm.Name:
			bad("the socket directory %s is volume %q in Kong's container and %q in the sidecar: Kong would not see the sockets", d, pm.Name, sm.Name)
		case volumes[pm.Name].EmptyDir == nil:
			bad("volume %q (the socket directory %s): want an emptyDir, shared by the pod's containers and nothing else", pm.Name, d)
		case sm.ReadOnly:
			bad("%s: the socket directory %s is mounted read-only: the plugin servers cannot create their sockets", where, d)
		}
	}
	// Each plugin server's metrics port is declared, for scrapers.
	for _, n := range p.names {
		cmd := p.vars["SUBGATE_PLUGINSERVER_"+serverVar(n)+"_START_CMD"]
		if m := metricsAddr.FindStringSubmatch(cmd); m != nil && !declared[portOf(m[1])] {
			bad("%s: ports: %s's metrics port %s (-metrics-addr in %s) is not declared", where, n, portOf(m[1]), p.file)
		}
	}
	return errs
}

var metricsAddr = regexp.MustCompile(`(?:^|\s)--?metrics-addr[= ](\S+)`)

// portOf is the port of HOST:PORT.
func portOf(addr string) string {
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		return addr[i+1:]
	}
	return ""
}

// mountOf is the container's mount that holds dir, the deepest one.
func mountOf(c *corev1.Container, dir string) *corev1.VolumeMount {
	var best *corev1.VolumeMount
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		mp := strings.TrimSuffix(m.MountPath, "/")
		if (dir == mp || strings.HasPrefix(dir, mp+"/")) && (best == nil || len(mp) > len(best.MountPath)) {
			best = m
		}
	}
	return best
}

// checkEntrypoint: the chart's Kong container runs the image's entrypoint
// and offers no way to change it, so the image must start Kong alone; an
// entrypoint that runs subgate-pluginservers would start a second set of
// plugin servers beside the sidecar's, on the same sockets.
func checkEntrypoint(dockerfile string) []string {
	text, err := os.ReadFile(dockerfile)
	if err != nil {
		return []string{err.Error()}
	}
	var last []string // the final stage's lines
	for _, l := range strings.Split(string(text), "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(strings.ToUpper(t), "FROM ") {
			last = nil
		}
		last = append(last, t)
	}
	var errs []string
	for _, l := range last {
		up := strings.ToUpper(l)
		if (strings.HasPrefix(up, "ENTRYPOINT") || strings.HasPrefix(up, "CMD")) && strings.Contains(l, supervisorCommand) {
			errs = append(errs, fmt.Sprintf("%s: %q: the Helm chart's Kong container runs the image's entrypoint and cannot change it, so in Kubernetes it would start the plugin servers a second time beside the sidecar; keep Kong's entrypoint in the image and give docker-compose the supervisor as its entrypoint", dockerfile, l))
		}
	}
	return errs
}

var fromKong = regexp.MustCompile(`(?i)^FROM\s+(?:\S+/)?kong:(\d+\.\d+\.\d+)\b`)

// checkKongVersion: the chart gates features on the Kong version the values
// declare (image.effectiveSemver), which must be the one the image is built
// from (docker/Dockerfile's kong:X.Y.Z).
func checkKongVersion(dockerfile, valuesFile string) []string {
	text, err := os.ReadFile(dockerfile)
	if err != nil {
		return []string{err.Error()}
	}
	built := ""
	for _, l := range strings.Split(string(text), "\n") {
		if m := fromKong.FindStringSubmatch(strings.TrimSpace(l)); m != nil {
			built = m[1]
		}
	}
	raw, err := os.ReadFile(valuesFile)
	if err != nil {
		return []string{err.Error()}
	}
	var v struct {
		Image struct {
			EffectiveSemver string `json:"effectiveSemver"`
		} `json:"image"`
	}
	if err := yaml.Unmarshal(raw, &v); err != nil {
		return []string{fmt.Sprintf("%s: %v", valuesFile, err)}
	}
	switch {
	case built == "":
		return []string{fmt.Sprintf("%s: no FROM kong:X.Y.Z: the Kong version of the image is unknown", dockerfile)}
	case v.Image.EffectiveSemver != built:
		return []string{fmt.Sprintf("%s: image.effectiveSemver is %q, but %s builds the image from kong:%s", valuesFile, v.Image.EffectiveSemver, dockerfile, built)}
	}
	return nil
}

// vaultEnvVar is the variable Kong's env vault reads for a reference
// (kong/vaults/env: prefix .. resource, upper-cased, "-" as "_"), or "" for
// another vault.
func vaultEnvVar(ref string) string {
	s := strings.TrimSuffix(strings.TrimPrefix(ref, "{vault://"), "}")
	vault, rest, ok := strings.Cut(s, "/")
	if !ok || vault != "env" {
		return ""
	}
	rest, query, _ := strings.Cut(rest, "?")
	rest, _, _ = strings.Cut(rest, "#")
	resource, _, _ := strings.Cut(rest, "/")
	prefix := ""
	for _, kv := range strings.Split(query, "&") {
		if k, v, _ := strings.Cut(kv, "="); k == "prefix" {
			prefix = v
		}
	}
	return strings.ToUpper(strings.ReplaceAll(prefix+resource, "-", "_"))
}

// vaultRefs collects the env vault variables a config references.
func vaultRefs(v any, where string, into map[string]string) {
	switch t := v.(type) {
	case string:
		if strings.HasPrefix(t, "{vault://") && strings.HasSuffix(t, "}") {
			if name := vaultEnvVar(t); name != "" {
				if _, ok := into[name]; !ok {
					into[name] = where
				}
			}
		}
	case map[string]any:
		keys := sortedKeys(t)
		for _, k := range keys {
			vaultRefs(t[k], where, into)
		}
	case []any:
		for _, e := range t {
			vaultRefs(e, where, into)
		}
	}
}
