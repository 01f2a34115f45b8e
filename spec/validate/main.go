// Command validate checks declarative kong.yml files against the plugins'
// own Kong schemas, as Kong 3.9 does when it loads them, before any Kong
// runs: each plugin binary in -bin is asked for its schema (-dump), the
// schema is checked against Kong's metaschema, and every plugin config in
// the files is validated with the same code the spec's stand-in for Kong
// uses (pkg/kongschema), plus rules Kong cannot know: a vault reference only
// in a referenceable field and well formed, and subscription-owner and
// payment-token only where jwt-claims runs too (they read its claims).
// Then each plugin config, as Kong would send it, goes to its binary's
// -check: the plugin's own start-time validation (pkg/kongx check.go), the
// rules Kong's schema cannot say, so that no config that passes here
// answers 500 plugin_misconfigured on every request. Services and routes
// are checked for fields Kong does not know; with -kong (auto: the kit's
// Kong, $KONG or kong on PATH), `kong config parse` judges each file too.
//
//	go run ./spec/validate -bin bin [-kong auto|off|PATH] [file-or-dir ...]   (default kong/kong.yml)
//
// Every error names file:line, the route, the plugin and the field; the
// exit status is 1 when anything is wrong.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/subgate/subgate/pkg/kongschema"
	"github.com/subgate/subgate/pkg/supervise"
	"github.com/subgate/subgate/spec/realkong"
)

// needsClaims are the plugins that read the claims jwt-claims verified
// (DESIGN.md, "Between plugins: one shared-context value").
var needsClaims = map[string]bool{"subscription-owner": true, "payment-token": true}

func main() {
	bin := flag.String("bin", "bin", "directory holding the plugin binaries (make build), named as the plugins")
	kong := flag.String("kong", "off", "also run `kong config parse` on each file: auto (a Kong if one is found), off, or the kong executable")
	flag.Parse()
	exe := *kong
	switch exe {
	case "off":
		exe = ""
	case "auto":
		if exe = realkong.Find(); exe == "" {
			fmt.Fprintln(os.Stderr, "validate: no Kong found, so no `kong config parse`: "+realkong.Hint)
		}
	}
	os.Exit(runWith(*bin, exe, flag.Args(), os.Stdout, os.Stderr))
}

// run is main without the process and without Kong: the exit status.
func run(binDir string, args []string, stdout, stderr io.Writer) int {
	return runWith(binDir, "", args, stdout, stderr)
}

// runWith is run, with `kong config parse` when kong names an executable.
func runWith(binDir, kong string, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		args = []string{"kong/kong.yml"}
	}
	schemas, problems := loadSchemas(binDir)
	for _, p := range problems {
		fmt.Fprintln(stderr, p)
	}
	status := 0
	if len(problems) > 0 {
		status = 1
	}
	files, err := expand(args)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, file := range files {
		n, errs := validateFile(file, schemas, binDir)
		if kong != "" {
			errs = append(errs, kongParse(kong, binDir, schemas, file)...)
		}
		for _, e := range errs {
			fmt.Fprintln(stderr, e)
		}
		if len(errs) > 0 {
			status = 1
		} else {
			fmt.Fprintf(stdout, "ok: %s (%d plugin configs)\n", file, n)
		}
	}
	return status
}

func expand(args []string) ([]string, error) {
	var files []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, a)
			continue
		}
		for _, pat := range []string{"*.yml", "*.yaml"} {
			m, _ := filepath.Glob(filepath.Join(a, pat))
			files = append(files, m...)
		}
	}
	sort.Strings(files)
	return files, nil
}

// loadSchemas dumps every executable in dir and checks each schema
// against Kong's metaschema.
func loadSchemas(dir string) (map[string]*kongschema.Schema, []string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, []string{fmt.Sprintf("-bin %s: %v (run make build)", dir, err)}
	}
	schemas := map[string]*kongschema.Schema{}
	var problems []string
	if s, err := kongschema.ParseSchema([]byte(kongschema.FileLogSchema)); err == nil {
		schemas["file-log"] = s // bundled with Kong
	} else {
		problems = append(problems, "file-log schema: "+err.Error())
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || info.Mode()&0o111 == 0 {
			continue
		}
		if strings.HasPrefix(e.Name(), "subgate-") {
			continue // the project's commands beside the plugins (subgate-pluginservers)
		}
		bin := filepath.Join(dir, e.Name())
		name, raw, err := kongschema.DumpSchema(bin)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if name != e.Name() {
			problems = append(problems, fmt.Sprintf("%s: -dump names the plugin %q; Kong names it after the binary", bin, name))
			continue
		}
		if err := kongschema.CheckMetaschemaJSON(raw); err != nil {
			for _, e := range err.(kongschema.Errors) {
				problems = append(problems, fmt.Sprintf("%s: schema: %s", bin, e))
			}
		}
		if s, err := kongschema.ParseSchema(raw); err == nil {
			schemas[name] = s
		} else {
			problems = append(problems, fmt.Sprintf("%s: schema: %v", bin, err))
		}
	}
	return schemas, problems
}

// plugin is one plugin entry of a kong.yml, with where it applies.
type plugin struct {
	node     *yaml.Node // the entry's mapping
	name     string
	scope    string // "route profile", "service echo", "global"
	enabled  bool
	route    string // the route or service it is attached to, by name
	service  string
	consumer bool
	sent     map[string]any // the config as Kong would send it, once Kong's rules passed
}

// route is a route with its service, by name.
type route struct {
	name, service string
	line          int
}

type fileCheck struct {
	file    string
	errs    []string
	plugins []*plugin
	routes  []route
}

func (c *fileCheck) errorf(line int, format string, args ...any) {
	e := fmt.Sprintf("%s:%d: ", c.file, line) + fmt.Sprintf(format, args...)
	if !slices.Contains(c.errs, e) { // several entity checks may miss one field, as Kong says once
		c.errs = append(c.errs, e)
	}
}

func validateFile(file string, schemas map[string]*kongschema.Schema, binDir string) (int, []string) {
	c := &fileCheck{file: file}
	text, err := os.ReadFile(file)
	if err != nil {
		return 0, []string{err.Error()}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil {
		return 0, []string{fmt.Sprintf("%s: %v", file, err)}
	}
	kongschema.AsKongReadsYAML(&doc)
	if len(doc.Content) == 0 || resolve(doc.Content[0]).Kind != yaml.MappingNode {
		return 0, []string{fmt.Sprintf("%s:1: not a declarative config (want a mapping)", file)}
	}
	root := resolve(doc.Content[0])
	// Kong's declarative loader accepts these format versions (kong/db/declarative).
	if v := get(root, "_format_version"); v == nil {
		c.errorf(root.Line, "_format_version: required field missing")
	} else if s := resolve(v).Value; s != "3.0" && s != "2.1" && s != "1.1" {
		c.errorf(v.Line, "_format_version: expected one of: 1.1, 2.1, 3.0")
	}
	c.collect(root)
	c.checkPlugins(schemas)
	c.startChecks(binDir)
	c.checkOrder()
	return len(c.plugins), c.errs
}

// collect walks services[].routes[].plugins[], services[].plugins[],
// routes[] (with a service reference) and top-level plugins[].
func (c *fileCheck) collect(root *yaml.Node) {
	for i, svc := range items(get(root, "services")) {
		sname := scalar(get(svc, "name"), "#"+strconv.Itoa(i))
		c.checkEntity("services", "service "+sname, svc)
		c.addPlugins(get(svc, "plugins"), "service "+sname, "", sname)
		for j, r := range items(get(svc, "routes")) {
			rname := scalar(get(r, "name"), fmt.Sprintf("%s#%d", sname, j))
			c.checkEntity("routes", "route "+rname, r)
			c.routes = append(c.routes, route{rname, sname, r.Line})
			c.addPlugins(get(r, "plugins"), "route "+rname, rname, "")
		}
	}
	for j, r := range items(get(root, "routes")) {
		rname := scalar(get(r, "name"), fmt.Sprintf("#%d", j))
		c.checkEntity("routes", "route "+rname, r)
		c.routes = append(c.routes, route{rname, ref(get(r, "service")), r.Line})
		c.addPlugins(get(r, "plugins"), "route "+rname, rname, "")
	}
	for _, p := range items(get(root, "plugins")) {
		rname, sname := ref(get(p, "route")), ref(get(p, "service"))
		scope := "global"
		if rname != "" {
			scope = "route " + rname
		} else if sname != "" {
			scope = "service " + sname
		}
		c.addPlugins(&yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{p}}, scope, rname, sname)
	}
}

// checkEntity: a service or route field Kong does not know (a typo) makes
// Kong refuse the file; a route must match on something, a service name
// where it is.
func (c *fileCheck) checkEntity(kind, where string, n *yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode {
		c.errorf(n.Line, "%s: expected a record", where)
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !kongschema.KnownField(kind, k.Value) {
			c.errorf(k.Line, "%s: %s: unknown field", where, k.Value)
		}
	}
	switch kind {
	case "routes":
		for _, f := range kongschema.RouteMatchFields {
			if get(n, f) != nil {
				return
			}
		}
		c.errorf(n.Line, "%s: must set one of '%s'", where, strings.Join(kongschema.RouteMatchFields, "', '"))
	case "services":
		if get(n, "url") == nil && get(n, "host") == nil {
			c.errorf(n.Line, "%s: host: required field missing (set url or host)", where)
		}
	}
}

func (c *fileCheck) addPlugins(list *yaml.Node, scope, routeName, serviceName string) {
	for _, n := range items(list) {
		enabled := true
		if e := get(n, "enabled"); e != nil && resolve(e).Value == "false" {
			enabled = false
		}
		c.plugins = append(c.plugins, &plugin{node: n, name: scalar(get(n, "name"), ""), scope: scope,
			enabled: enabled, route: routeName, service: serviceName, consumer: get(n, "consumer") != nil})
	}
}

// pluginKeys are the plugins entity's fields (kong/db/schema/entities/plugins.lua)
// a declarative entry may set; anything else is an unknown field to Kong.
var pluginKeys = map[string]bool{"id": true, "name": true, "instance_name": true, "route": true, "service": true,
	"consumer": true, "config": true, "protocols": true, "enabled": true, "tags": true, "ordering": true}

func (c *fileCheck) checkPlugins(schemas map[string]*kongschema.Schema) {
	seen := map[string]bool{}
	for _, p := range c.plugins {
		where := fmt.Sprintf("%s: plugin %s", p.scope, p.name)
		if p.name == "" {
			c.errorf(p.node.Line, "%s: name: required field missing", p.scope)
			continue
		}
		for i := 0; i+1 < len(p.node.Content); i += 2 {
			if k := p.node.Content[i]; !pluginKeys[k.Value] {
				c.errorf(k.Line, "%s: %s: unknown field", where, k.Value)
			}
		}
		// Kong derives a plugin's id from name, route, service and consumer,
		// so a second one in the same place is a uniqueness violation.
		key := strings.Join([]string{p.name, p.route, p.service, scalar(get(p.node, "consumer"), "")}, "\x00")
		if seen[key] {
			c.errorf(p.node.Line, "%s: uniqueness violation: 'plugins' entity already declared here", where)
		}
		seen[key] = true
		s, ok := schemas[p.name]
		if !ok {
			c.errorf(p.node.Line, "%s: plugin '%s' not enabled; add it to the 'plugins' configuration property (no binary of that name)", where, p.name)
			continue
		}
		cfgNode := get(p.node, "config")
		var given map[string]any
		if cfgNode != nil {
			var v any
			if err := cfgNode.Decode(&v); err != nil {
				c.errorf(cfgNode.Line, "%s: config: %v", where, err)
				continue
			}
			if v != nil {
				m, ok := jsonish(v).(map[string]any)
				if !ok {
					c.errorf(cfgNode.Line, "%s: config: expected a record", where)
					continue
				}
				given = m
			}
		}
		processed, errs := s.Validate(given)
		errs = append(errs, kongschema.CheckReferences(s.Entity, map[string]any{"config": given}, nil)...)
		for _, e := range errs {
			c.errorf(lineOf(p.node, e.Path), "%s: %s", where, e)
		}
		if len(errs) == 0 && p.name != "file-log" {
			// What Kong would send the plugin at instance start, references
			// still unresolved, for its -check.
			p.sent = kongschema.SelectUnresolved(s.Entity.Field("config"), processed)
		}
	}
}

// startChecks hands every plugin config that passed Kong's rules to its
// binary's -check (one run per binary) and reports what the plugin would
// refuse at instance start.
func (c *fileCheck) startChecks(binDir string) {
	byPlugin := map[string][]*plugin{}
	var names []string
	for _, p := range c.plugins {
		if p.sent != nil {
			if byPlugin[p.name] == nil {
				names = append(names, p.name)
			}
			byPlugin[p.name] = append(byPlugin[p.name], p)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		list := byPlugin[name]
		configs := make([]map[string]any, len(list))
		for i, p := range list {
			configs[i] = p.sent
		}
		problems, err := startCheck(filepath.Join(binDir, name), configs)
		if err != nil {
			c.errorf(list[0].node.Line, "plugin %s: -check: %v", name, err)
			continue
		}
		for i, p := range list {
			for _, msg := range problems[i] {
				c.errorf(lineOf(p.node, []string{"config"}), "%s: plugin %s: refused at instance start: %s", p.scope, p.name, msg)
			}
		}
	}
}

// startCheck runs `bin -check` on configs.
func startCheck(bin string, configs []map[string]any) ([][]string, error) {
	in, err := json.Marshal(configs)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-check")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	var problems [][]string
	if err := json.Unmarshal(out, &problems); err != nil || len(problems) != len(configs) {
		return nil, fmt.Errorf("unexpected output %q", out)
	}
	return problems, nil
}

// kongParse is `kong config parse` of file, with the plugins of binDir
// configured as kong/plugins.env configures them (only what parsing needs:
// each server's name, socket and -dump).
func kongParse(kong, binDir string, schemas map[string]*kongschema.Schema, file string) []string {
	yml, err := os.ReadFile(file)
	if err != nil {
		return []string{err.Error()}
	}
	abs, err := filepath.Abs(binDir)
	if err != nil {
		return []string{err.Error()}
	}
	var names []string
	for name := range schemas {
		if name != "file-log" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	env := []string{"KONG_PLUGINS=" + strings.Join(append([]string{"bundled"}, names...), ","), "KONG_PLUGINSERVER_NAMES=" + strings.Join(names, ",")}
	for _, n := range names {
		env = append(env, supervise.Setting("KONG", n, "SOCKET")+"="+filepath.Join(os.TempDir(), n+".socket"),
			supervise.Setting("KONG", n, "QUERY_CMD")+"="+filepath.Join(abs, n)+" -dump")
	}
	if err := realkong.ConfigParse(kong, env, yml); err != nil {
		return []string{fmt.Sprintf("%s:1: kong config parse refused it:\n%s", file, err)}
	}
	return nil
}

// checkOrder: a plugin that reads jwt-claims' claims must run where
// jwt-claims runs (the same route, its service, or globally).
func (c *fileCheck) checkOrder() {
	for _, r := range c.routes {
		var applied []*plugin
		for _, p := range c.plugins {
			if p.enabled && !p.consumer && (p.route == r.name || (p.route == "" && (p.service == "" || p.service == r.service))) {
				applied = append(applied, p)
			}
		}
		claims := false
		for _, p := range applied {
			claims = claims || p.name == "jwt-claims"
		}
		for _, p := range applied {
			if needsClaims[p.name] && !claims {
				c.errorf(p.node.Line, "route %s: plugin %s: needs jwt-claims on the same route or its service (it reads the claims jwt-claims verified)", r.name, p.name)
			}
		}
	}
}

// jsonish turns YAML values into what Kong's JSON decoding gives (numbers
// are float64, maps have string keys), as the stand-in gateway does.
func jsonish(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// get returns a mapping's value for key (aliases resolved), or nil.
func get(n *yaml.Node, key string) *yaml.Node {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return resolve(n.Content[i+1])
		}
	}
	return nil
}

func items(n *yaml.Node) []*yaml.Node {
	n = resolve(n)
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, e := range n.Content {
		out[i] = resolve(e)
	}
	return out
}

func scalar(n *yaml.Node, def string) string {
	if n = resolve(n); n != nil && n.Kind == yaml.ScalarNode {
		return n.Value
	}
	return def
}

// ref reads a foreign reference: a name or id, or {name: ...} / {id: ...}.
func ref(n *yaml.Node) string {
	if s := scalar(n, ""); s != "" {
		return s
	}
	if s := scalar(get(n, "name"), ""); s != "" {
		return s
	}
	return scalar(get(n, "id"), "")
}

// lineOf follows an error's path (config.keys[0].kid) from a plugin entry
// to the deepest node that exists, through aliases, and returns its line.
func lineOf(n *yaml.Node, path []string) int {
	line := n.Line
	cur := n
	for _, seg := range path {
		cur = resolve(cur)
		if strings.HasPrefix(seg, "[") {
			i, err := strconv.Atoi(strings.Trim(seg, "[]"))
			if err != nil || cur.Kind != yaml.SequenceNode || i >= len(cur.Content) {
				break
			}
			cur = cur.Content[i]
			line = resolve(cur).Line
			continue
		}
		if cur.Kind != yaml.MappingNode {
			break
		}
		found := false
		for i := 0; i+1 < len(cur.Content); i += 2 {
			if cur.Content[i].Value == seg {
				line, cur, found = cur.Content[i].Line, cur.Content[i+1], true
				break
			}
		}
		if !found {
			break
		}
	}
	return line
}
