package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Config says where the checker finds what it checks.
type Config struct {
	Dir        string // docker/k8s: values.yaml, values-dbless.yaml, manifests/*.yaml
	Chart      string // Kong's Helm chart, with its CRDs in crds/
	PluginsEnv string // kong/plugins.env
	Dockerfile string // docker/Dockerfile
	Release    string // helm release name
	Namespace  string // the release's namespace, also the manifests'
	// Validate runs spec/validate (make validate's checker) on declarative
	// config files; it returns what the command printed and its error.
	Validate func(files []string) (stdout, stderr string, err error)
}

// install is one way of installing subgate with the chart.
type install struct {
	name      string
	values    []string // values files of Config.Dir, in -f order
	manifests bool     // the KIC manifests apply
}

var installs = []install{
	{"kic", []string{"values.yaml"}, true},
	{"dbless", []string{"values.yaml", "values-dbless.yaml"}, false},
}

// Objects the README says to create before installing (values.yaml's
// header): the plugin-server settings as a ConfigMap made from
// kong/plugins.env, and the Redis password.
const (
	settingsConfigMap = "subgate-pluginservers"
	redisSecret       = "subgate-redis"
	redisSecretKey    = "password"
)

// Result is what Check found: problems fail the check; notes are printed.
type Result struct {
	Problems []string
	Notes    []string
}

// Check renders the chart with each install's values, validates every
// rendered object and manifest against its schema, checks the subgate
// wiring of the Kong pod, and validates every plugin config with the
// plugins' own schemas (spec/validate).
func Check(c Config) Result {
	var r Result
	k, err := newKube(filepath.Join(c.Chart, "crds", "custom-resource-definitions.yaml"))
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
		return r
	}
	settings, err := readEnvFile(c.PluginsEnv)
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
	}
	penv := settings // compared with the pod
	if penv != nil && penv.kongStartsServers() {
		r.Notes = append(r.Notes, fmt.Sprintf("pending: %s still has Kong start the plugin servers (KONG_PLUGINSERVER_*_START_CMD); its settings are not compared with the pod until it gives them to subgate-pluginservers", c.PluginsEnv))
		penv = nil
	}
	r.Problems = append(r.Problems, checkEntrypoint(c.Dockerfile)...)
	r.Problems = append(r.Problems, checkKongVersion(c.Dockerfile, filepath.Join(c.Dir, "values.yaml"))...)

	var manifests []*object
	files, _ := filepath.Glob(filepath.Join(c.Dir, "manifests", "*.yaml"))
	sort.Strings(files)
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			r.Problems = append(r.Problems, err.Error())
			continue
		}
		for _, d := range splitDocuments(string(text)) {
			o, errs := k.decode(fmt.Sprintf("%s:%d", rel(c.Dir, f), d.line), d.text, c.Namespace)
			r.Problems = append(r.Problems, errs...)
			if o != nil {
				manifests = append(manifests, o)
			}
		}
	}

	var generated []string
	sources := map[string]func(line int) string{} // generated file -> its lines' sources
	tmp, err := os.MkdirTemp("", "k8s-validate-")
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
		return r
	}
	defer os.RemoveAll(tmp)

	for _, in := range installs {
		var valueFiles []string
		for _, v := range in.values {
			valueFiles = append(valueFiles, filepath.Join(c.Dir, v))
		}
		label := "helm template -f " + strings.Join(in.values, " -f ")
		rendered, err := render(c.Chart, valueFiles, c.Release, c.Namespace)
		if err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: %v", label, err))
			continue
		}
		var objs []*object
		for _, name := range sortedKeys(rendered) {
			for i, d := range splitDocuments(rendered[name]) {
				src := fmt.Sprintf("%s: %s", label, name)
				if i > 0 {
					src += "#" + strconv.Itoa(i+1)
				}
				o, errs := k.decode(src, d.text, c.Namespace)
				r.Problems = append(r.Problems, errs...)
				if o != nil {
					objs = append(objs, o)
				}
			}
		}
		note := fmt.Sprintf("%s: %d objects rendered", label, len(objs))
		if in.manifests {
			objs = append(objs, manifests...)
			note += fmt.Sprintf(" + %d in manifests/", len(manifests))
		}
		r.Notes = append(r.Notes, note)

		w := wiring{env: penv, configMaps: map[string]map[string]string{}, refs: refs{}, vaultVars: map[string]string{}}
		seen := map[string]*object{}
		for _, o := range objs {
			key := o.gvk.Kind + " " + o.ns + "/" + o.name
			if prev := seen[key]; prev != nil {
				r.Problems = append(r.Problems, fmt.Sprintf("%s: %s %s is also %s: one would overwrite the other", o.src, o.gvk.Kind, o.name, prev.src))
			}
			seen[key] = o
			switch t := o.typed.(type) {
			case *corev1.ConfigMap:
				w.configMaps[o.ns+"/"+o.name] = t.Data
				w.refs.add("ConfigMap", o.ns, o.name, append(sortedKeys(t.Data), sortedKeys(t.BinaryData)...))
			case *corev1.Secret:
				w.refs.add("Secret", o.ns, o.name, append(sortedKeys(t.Data), sortedKeys(t.StringData)...))
			}
		}
		if settings != nil {
			w.configMaps[c.Namespace+"/"+settingsConfigMap] = settings.vars
			w.refs.add("ConfigMap", c.Namespace, settingsConfigMap, sortedKeys(settings.vars))
		}
		if _, ok := w.refs[refKey("Secret", c.Namespace, redisSecret)]; !ok {
			w.refs.add("Secret", c.Namespace, redisSecret, []string{redisSecretKey})
		}

		// The plugin configs, as declarative config for spec/validate.
		if in.manifests {
			class := "kong"
			for _, o := range objs {
				if o.gvk.Kind == "IngressClass" {
					class = o.name
				}
			}
			d, vault, errs := kicConfig(objs, class)
			r.Problems = append(r.Problems, errs...)
			for k, v := range vault {
				w.vaultVars[k] = v
			}
			file := filepath.Join(tmp, in.name+".kong.yml")
			if err := os.WriteFile(file, []byte(d.text()), 0o644); err != nil {
				r.Problems = append(r.Problems, err.Error())
			}
			generated = append(generated, file)
			sources[file] = func(line int) string {
				if s, ok := d.sources[line]; ok {
					return s
				}
				return fmt.Sprintf("the KIC manifests as Kong config, line %d", line)
			}
		}
		dbless, ok := dblessConfig(objs)
		switch {
		case !ok && !in.manifests:
			r.Problems = append(r.Problems, fmt.Sprintf("%s: renders no DB-less config (dblessConfig), so Kong would serve no route", label))
		case ok && !in.manifests:
			var doc any
			if err := yaml.Unmarshal([]byte(dbless), &doc); err == nil {
				vaultRefs(doc, "dblessConfig.config", w.vaultVars)
			}
			file := filepath.Join(tmp, in.name+".kong.yml")
			if err := os.WriteFile(file, []byte(dbless), 0o644); err != nil {
				r.Problems = append(r.Problems, err.Error())
			}
			generated = append(generated, file)
			at, where := valuesLine(c.Dir, in.values, dbless)
			sources[file] = func(line int) string {
				if at > 0 {
					return fmt.Sprintf("%s:%d", where, at+line)
				}
				return fmt.Sprintf("%s: dblessConfig, line %d", label, line)
			}
		}

		kongPods := 0
		for _, o := range objs {
			spec := podSpec(o)
			if spec == nil {
				continue
			}
			r.Problems = append(r.Problems, checkPod(o, spec, w.refs)...)
			for _, ctr := range spec.Containers {
				if ctr.Name == "proxy" {
					kongPods++
					r.Problems = append(r.Problems, checkSubgate(o, spec, w)...)
				}
			}
		}
		if kongPods == 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: renders no Kong pod (a container named proxy)", label))
		}
	}

	if len(generated) > 0 && c.Validate != nil {
		out, errOut, err := c.Validate(generated)
		r.Problems = append(r.Problems, mapValidate(errOut, sources)...)
		if err != nil && strings.TrimSpace(errOut) == "" {
			r.Problems = append(r.Problems, fmt.Sprintf("spec/validate: %v", err))
		}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if rest, ok := strings.CutPrefix(l, "ok: "); ok {
				r.Notes = append(r.Notes, "plugin configs ok: "+strings.TrimPrefix(strings.TrimPrefix(rest, tmp), "/"))
			}
		}
	}
	return r
}

var located = regexp.MustCompile(`^(.+?):(\d+): (.*)$`)

// mapValidate turns spec/validate's "generated-file:line: message" lines
// into messages that name the manifest or values line they come from.
func mapValidate(out string, sources map[string]func(int) string) []string {
	var problems []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		if m := located.FindStringSubmatch(l); m != nil {
			if src, ok := sources[m[1]]; ok {
				n, _ := strconv.Atoi(m[2])
				problems = append(problems, src(n)+": "+m[3])
				continue
			}
		}
		problems = append(problems, "spec/validate: "+l)
	}
	return problems
}

// dblessConfig is the declarative config the chart renders for DB-less
// Kong: the kong.yml key of the ConfigMap the Kong pod mounts.
func dblessConfig(objs []*object) (string, bool) {
	mounted := map[string]bool{}
	for _, o := range objs {
		if spec := podSpec(o); spec != nil {
			for _, v := range spec.Volumes {
				if v.ConfigMap != nil {
					mounted[v.ConfigMap.Name] = true
				}
			}
		}
	}
	for _, o := range objs {
		if cm, ok := o.typed.(*corev1.ConfigMap); ok && mounted[o.name] {
			if text, ok := cm.Data["kong.yml"]; ok {
				return text, true
			}
		}
	}
	return "", false
}

// valuesLine finds the values file whose dblessConfig.config is text and
// the line before the config's first line, so that line n of the config is
// that line + n.
func valuesLine(dir string, files []string, text string) (int, string) {
	for i := len(files) - 1; i >= 0; i-- { // the last -f wins
		raw, err := os.ReadFile(filepath.Join(dir, files[i]))
		if err != nil {
			continue
		}
		var v struct {
			DblessConfig struct {
				Config string `json:"config"`
			} `json:"dblessConfig"`
		}
		if yaml.Unmarshal(raw, &v) != nil || v.DblessConfig.Config == "" {
			continue
		}
		if v.DblessConfig.Config != text {
			return 0, ""
		}
		lines := strings.Split(string(raw), "\n")
		for n, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(l), "config: |") {
				return n + 1, files[i]
			}
		}
	}
	return 0, ""
}

// rel names file relative to dir, for messages.
func rel(dir, file string) string {
	if r, err := filepath.Rel(dir, file); err == nil {
		return r
	}
	return file
}
