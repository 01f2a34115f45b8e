package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// ingressAnnotations are the konghq.com/ annotations the Kong Ingress
// Controller reads on an Ingress (its annotation reference). Another
// konghq.com/ key is a typo the controller ignores: "konghq.com/plugin"
// would leave the route without its plugins, open.
var ingressAnnotations = map[string]bool{"plugins": true, "protocols": true, "preserve-host": true, "strip-path": true,
	"https-redirect-status-code": true, "regex-priority": true, "regex-prefix": true, "methods": true, "snis": true,
	"request-buffering": true, "response-buffering": true, "host-aliases": true, "override": true, "path-handling": true,
	"path": true, "rewrite": true, "tags": true}

const classAnnotation = "kubernetes.io/ingress.class"

// declarative is a Kong declarative config built for spec/validate, one
// plugin entry per line so that each error it reports names its source.
type declarative struct {
	lines   []string
	sources map[int]string // line -> the resource that line comes from
}

func (d *declarative) add(line, src string) {
	d.lines = append(d.lines, line)
	if src != "" {
		d.sources[len(d.lines)] = src
	}
}

func (d *declarative) text() string { return strings.Join(d.lines, "\n") + "\n" }

func jsonLine(v any) string {
	b, _ := json.Marshal(v) // maps and slices from JSON decoding: cannot fail
	return string(b)
}

// kicConfig is the configuration the controller would send Kong for the
// manifests' Ingresses of ingress class class: a route per Ingress path with
// the plugins its konghq.com/plugins annotation names (a KongPlugin of its
// namespace, else a KongClusterPlugin, as the controller resolves them),
// each config taken from config or, with configFrom, from its Secret;
// KongClusterPlugins labelled global as global plugins. It also returns the
// env vault variables the configs reference.
func kicConfig(objs []*object, class string) (*declarative, map[string]string, []string) {
	var errs []string
	plugins := map[string]*object{} // "KongPlugin ns/name", "KongClusterPlugin name"
	secrets := map[string]*object{}
	var ingresses []*object
	for _, o := range objs {
		switch o.gvk.Kind {
		case "KongPlugin":
			plugins["KongPlugin "+o.ns+"/"+o.name] = o
		case "KongClusterPlugin":
			plugins["KongClusterPlugin "+o.name] = o
		case "Secret":
			secrets[o.ns+"/"+o.name] = o
		case "Ingress":
			ingresses = append(ingresses, o)
		}
	}
	vault := map[string]string{}
	used := map[*object]bool{}
	// entry is a plugin resource as a declarative plugin entry.
	entry := func(p *object) (map[string]any, bool) {
		e := map[string]any{"name": p.obj["plugin"]}
		if c, ok := p.obj["config"]; ok {
			e["config"] = c
		}
		if cf, ok := p.obj["configFrom"].(map[string]any); ok {
			ref, _ := cf["secretKeyRef"].(map[string]any)
			name, _ := ref["name"].(string)
			key, _ := ref["key"].(string)
			ns, _ := ref["namespace"].(string) // KongClusterPlugin names it
			if ns == "" {
				ns = p.ns
			}
			cfg, err := secretConfig(secrets[ns+"/"+name], key)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: configFrom: Secret %s: %v", p, name, err))
				return nil, false
			}
			e["config"] = cfg
		}
		if _, ok := p.obj["configPatches"]; ok {
			errs = append(errs, fmt.Sprintf("%s: configPatches: not checked by this validator; use a vault reference or configFrom", p))
			return nil, false
		}
		if d, _ := p.obj["disabled"].(bool); d {
			e["enabled"] = false
		}
		for _, k := range []string{"protocols", "instance_name", "ordering"} {
			if v, ok := p.obj[k]; ok {
				e[k] = v
			}
		}
		if c, ok := p.obj["consumerRef"].(string); ok {
			e["consumer"] = c
		}
		vaultRefs(e["config"], p.String(), vault)
		return e, true
	}
	d := &declarative{sources: map[int]string{}}
	d.add(`_format_version: "3.0"`, "")
	d.add("services:", "")
	d.add("  - name: kic", "")
	d.add("    url: http://kic.invalid", "")
	d.add("    routes:", "")
	routes := 0
	for _, o := range ingresses {
		ing, ok := o.typed.(*networkingv1.Ingress)
		if !ok {
			continue
		}
		got := ""
		if ing.Spec.IngressClassName != nil {
			got = *ing.Spec.IngressClassName
		} else {
			got = ing.Annotations[classAnnotation]
		}
		if got != class {
			errs = append(errs, fmt.Sprintf("%s: ingress class %q: the controller serves %q and ignores this Ingress", o, got, class))
		}
		for k := range ing.Annotations {
			if rest, ok := strings.CutPrefix(k, "konghq.com/"); ok && !ingressAnnotations[rest] && !strings.HasPrefix(rest, "headers.") {
				errs = append(errs, fmt.Sprintf("%s: annotation %s: not one the Kong Ingress Controller reads (konghq.com/plugins?)", o, k))
			}
		}
		names := splitList(ing.Annotations["konghq.com/plugins"])
		if len(names) == 0 {
			errs = append(errs, fmt.Sprintf("%s: no konghq.com/plugins annotation: its routes would run no subgate check", o))
		}
		var entries []map[string]any
		var srcs []string
		for _, n := range names {
			p := plugins["KongPlugin "+o.ns+"/"+n]
			if p == nil {
				p = plugins["KongClusterPlugin "+n]
			}
			if p == nil {
				errs = append(errs, fmt.Sprintf("%s: konghq.com/plugins: %s is neither a KongPlugin of namespace %s nor a KongClusterPlugin", o, n, o.ns))
				continue
			}
			used[p] = true
			if e, ok := entry(p); ok {
				entries = append(entries, e)
				srcs = append(srcs, fmt.Sprintf("%s on Ingress %s", p, o.name))
			}
		}
		for ri, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for pi, path := range rule.HTTP.Paths {
				routes++
				d.add(fmt.Sprintf("      - name: %s", jsonLine(fmt.Sprintf("%s/%s rules[%d].paths[%d] %s", o.ns, o.name, ri, pi, path.Path))), o.String())
				d.add(fmt.Sprintf("        paths: [%s]", jsonLine(path.Path)), o.String())
				if len(entries) > 0 {
					d.add("        plugins:", "")
				}
				for i, e := range entries {
					d.add("          - "+jsonLine(e), srcs[i])
				}
			}
		}
	}
	if routes == 0 {
		d.add("      []", "")
	}
	first := true
	for _, k := range sortedKeys(plugins) {
		p := plugins[k]
		if p.gvk.Kind != "KongClusterPlugin" {
			continue
		}
		if annotation(p, classAnnotation) != class {
			errs = append(errs, fmt.Sprintf("%s: annotation %s: want %q: without it the controller ignores this KongClusterPlugin, and every route naming it runs without it", p, classAnnotation, class))
		}
		if label(p, "global") == "true" {
			if first {
				d.add("plugins:", "")
				first = false
			}
			if e, ok := entry(p); ok {
				d.add("  - "+jsonLine(e), fmt.Sprintf("%s (global)", p))
			}
			used[p] = true
		}
	}
	for _, k := range sortedKeys(plugins) {
		if p := plugins[k]; !used[p] {
			if _, ok := entry(p); ok { // still report a config that cannot be read
				errs = append(errs, fmt.Sprintf("%s: no Ingress names it in konghq.com/plugins: its config is not checked", p))
			}
		}
	}
	return d, vault, errs
}

func annotation(o *object, key string) string {
	md, _ := o.obj["metadata"].(map[string]any)
	a, _ := md["annotations"].(map[string]any)
	s, _ := a[key].(string)
	return s
}

func label(o *object, key string) string {
	md, _ := o.obj["metadata"].(map[string]any)
	a, _ := md["labels"].(map[string]any)
	s, _ := a[key].(string)
	return s
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// secretConfig reads a plugin config from a Secret's key (stringData, or
// data in base64), YAML or JSON, as the controller reads configFrom.
func secretConfig(s *object, key string) (map[string]any, error) {
	if s == nil {
		return nil, fmt.Errorf("not in the manifests")
	}
	var raw []byte
	if sd, ok := s.obj["stringData"].(map[string]any); ok {
		if v, ok := sd[key].(string); ok {
			raw = []byte(v)
		}
	}
	if raw == nil {
		if d, ok := s.obj["data"].(map[string]any); ok {
			if v, ok := d[key].(string); ok {
				b, err := base64.StdEncoding.DecodeString(v)
				if err != nil {
					return nil, fmt.Errorf("data.%s: %v", key, err)
				}
				raw = b
			}
		}
	}
	if raw == nil {
		return nil, fmt.Errorf("no key %q", key)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("key %q: %v", key, err)
	}
	if cfg == nil {
		return nil, fmt.Errorf("key %q: empty config", key)
	}
	return cfg, nil
}
