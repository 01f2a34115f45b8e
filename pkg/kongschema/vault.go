package kongschema

// Vault references, as Kong 3.9 handles them for plugin configs:
//
//   - At load, a referenceable string field holding something that looks
//     like a reference (kong/pdk/vault.lua is_reference: "{vault://" ... "}")
//     skips every validator (kong/db/schema/init.lua validate_field). Nothing
//     else about the reference is checked at load: a malformed reference or
//     a missing variable is only logged when it is resolved, and the field
//     then holds "" (init.lua resolve_reference, vault.lua update_from_cache).
//   - A reference in a field that is not referenceable is an ordinary
//     string to Kong: it passes validation (if the field's validators let
//     it) and reaches the plugin verbatim, unresolved. Kong does not refuse
//     it; CheckReferences below does, because it is always a mistake here.
//   - When the config is read for the proxy path (process_auto_fields in
//     the "select" context, from kong.db.plugins:each in
//     kong/runloop/plugins_iterator.lua), references in referenceable
//     fields are resolved and remembered in the record's "$refs";
//     plugins_iterator then calls kong.vault.update(cfg), which re-resolves
//     from "$refs". Both happen before the config is sent to the plugin
//     server, so the plugin sees the secret, and "$refs" too (cjson.encode
//     of the whole table in kong/runloop/plugin_servers/rpc/pb_rpc.lua).
//
// Which environment the env vault reads: kong/vaults/env/init.lua copies
// `environ` into a Lua table in its init(). Kong calls that init() from
// Vaults:load_vault_schemas (kong/db/dao/vaults.lua, "strategy.init()"),
// which Kong.init() calls (kong/init.lua, db.vaults:load_vault_schemas),
// and Kong.init() runs in init_by_lua_block (kong/templates/nginx_kong.lua):
// in the nginx master process, while nginx loads its configuration, before
// it forks the workers and before it replaces the workers' environment with
// the `env` directives' subset. So {vault://env/NAME} sees the environment
// Kong itself was started with (the container's), and the workers inherit
// that table by fork; plugin servers, spawned later from a worker, do not
// see it (DESIGN.md). The env vault's get() upper-cases the resource, turns
// "-" into "_", adds the ?prefix= and, for version #2, "_PREVIOUS".

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// IsReference is kong/pdk/vault.lua is_reference.
func IsReference(s string) bool {
	return strings.HasPrefix(s, "{vault://") && strings.HasSuffix(s, "}")
}

// Reference is a parsed reference (vault.lua parse_reference).
type Reference struct {
	Vault, Resource, Key string
	Config               url.Values
	Version              int
}

// ParseReference is kong/pdk/vault.lua parse_reference, with its messages.
func ParseReference(ref string) (Reference, error) {
	var r Reference
	if !IsReference(ref) {
		return r, fmt.Errorf("not a reference [%s]", ref)
	}
	u, err := url.Parse(ref[1 : len(ref)-1])
	if err != nil {
		return r, fmt.Errorf("reference is not url (%v) [%s]", err, ref)
	}
	if u.Host == "" {
		return r, fmt.Errorf("reference url is missing host [%s]", ref)
	}
	if u.Path == "" {
		return r, fmt.Errorf("reference url is missing path [%s]", ref)
	}
	resource := u.Path[1:]
	if resource == "" {
		return r, fmt.Errorf("reference url has empty path [%s]", ref)
	}
	if u.Fragment != "" {
		if r.Version, err = strconv.Atoi(u.Fragment); err != nil {
			return r, fmt.Errorf("reference url has invalid version [%s]", ref)
		}
	}
	dir := strings.HasSuffix(resource, "/")
	var parts []string
	for _, p := range strings.Split(resource, "/") {
		if p != "" {
			parts = append(parts, p)
		}
	}
	switch {
	case len(parts) == 0:
		return r, fmt.Errorf("reference url has invalid path [%s]", ref)
	case len(parts) == 1 || dir:
		r.Resource = strings.Join(parts, "/")
	default:
		r.Resource, r.Key = strings.Join(parts[:len(parts)-1], "/"), parts[len(parts)-1]
	}
	r.Vault, r.Config = u.Host, u.Query()
	return r, nil
}

// envVaultName is the variable kong/vaults/env/init.lua get() reads.
func envVaultName(r Reference) string {
	name := strings.ToUpper(strings.ReplaceAll(r.Config.Get("prefix")+r.Resource, "-", "_"))
	if r.Version == 2 {
		name += "_PREVIOUS"
	}
	return name
}

// Resolve returns a reference's value from env (the environment Kong's
// env vault sees), or "" and a warning as Kong logs it when it cannot.
// Only the env vault is modelled.
func Resolve(ref string, env map[string]string) (string, string) {
	r, err := ParseReference(ref)
	if err != nil {
		return "", fmt.Sprintf("unable to resolve reference %s (%v)", ref, err)
	}
	if r.Vault != "env" {
		return "", fmt.Sprintf("unable to resolve reference %s (could not find vault (%s))", ref, r.Vault)
	}
	v, ok := env[envVaultName(r)]
	if !ok {
		return "", fmt.Sprintf("unable to resolve reference %s (no value found)", ref)
	}
	if r.Key != "" {
		var obj map[string]any
		if err := json.Unmarshal([]byte(v), &obj); err != nil {
			return "", fmt.Sprintf("unable to resolve reference %s (could not get subfield value: unable to json decode value)", ref)
		}
		s, ok := obj[r.Key].(string)
		if !ok {
			return "", fmt.Sprintf("unable to resolve reference %s (could not get subfield value: subfield %s not found in JSON secret)", ref, r.Key)
		}
		return s, ""
	}
	return v, ""
}

// Select is process_auto_fields in the "select" context without nulls, as
// the plugins iterator reads a config: null fields are dropped (cjson then
// leaves them out), integers floored, unknown keys and "" strings dropped,
// references in referenceable fields resolved from env and kept in "$refs".
// It returns the config and the warnings Kong would log.
func Select(rec *Field, m map[string]any, env map[string]string) (map[string]any, []string) {
	return selectRecord(rec, m, env, true)
}

// SelectUnresolved is Select before any vault is read: the config as the
// plugin would receive it, references left as written (what a plugin
// binary's -check takes).
func SelectUnresolved(rec *Field, m map[string]any) map[string]any {
	out, _ := selectRecord(rec, m, nil, false)
	delete(out, "$refs")
	return out
}

func selectRecord(rec *Field, m map[string]any, env map[string]string, resolving bool) (map[string]any, []string) {
	var warns []string
	resolve := func(ref string) string {
		if !resolving {
			return ref
		}
		v, w := Resolve(ref, env)
		if w != "" {
			warns = append(warns, w)
		}
		return v
	}
	out := map[string]any{}
	refs := map[string]any{}
	for _, f := range rec.Fields {
		v, ok := m[f.Name]
		if v == nil && ok && f.Required {
			v, ok = missing(f)
		}
		v = selectValue(f, v, env, resolving, &warns)
		if v == nil || !ok {
			continue
		}
		switch x := v.(type) {
		case string:
			if f.Referenceable && IsReference(x) {
				refs[f.Name] = x
				v = resolve(x)
			} else if lm, has := number(f.Attrs["len_min"]); x == "" && (!has || lm > 0) {
				continue
			}
		case []any:
			if f.Elements != nil && f.Elements.Type == "string" && f.Elements.Referenceable {
				r := map[string]any{}
				for i, e := range x {
					if s, ok := e.(string); ok && IsReference(s) {
						r[strconv.Itoa(i+1)] = s // a Lua array: 1-based
						x[i] = resolve(s)
					}
				}
				if len(r) > 0 {
					refs[f.Name] = r
				}
			}
		case map[string]any:
			if f.Type == "map" && f.Values != nil && f.Values.Type == "string" && f.Values.Referenceable {
				r := map[string]any{}
				for k, e := range x {
					if s, ok := e.(string); ok && IsReference(s) {
						r[k] = s
						x[k] = resolve(s)
					}
				}
				if len(r) > 0 {
					refs[f.Name] = r
				}
			}
		}
		out[f.Name] = v
	}
	if len(refs) > 0 {
		out["$refs"] = refs
	}
	return out, warns
}

func selectValue(f *Field, v any, env map[string]string, resolving bool, warns *[]string) any {
	switch x := v.(type) {
	case float64:
		if f.Type == "integer" {
			return float64(int64(x))
		}
	case map[string]any:
		if f.Type == "record" {
			r, w := selectRecord(f, x, env, resolving)
			*warns = append(*warns, w...)
			return r
		}
		if f.Type == "map" && f.Values != nil {
			out := map[string]any{}
			for k, e := range x {
				if e = selectValue(f.Values, e, env, resolving, warns); e != nil {
					out[k] = e
				}
			}
			return out
		}
	case []any:
		if f.Elements != nil {
			out := make([]any, len(x))
			for i, e := range x {
				out[i] = selectValue(f.Elements, e, env, resolving, warns)
			}
			return out
		}
	}
	return v
}

// CheckReferences reports what Kong lets through but is a mistake in this
// project: a reference in a field that is not referenceable (Kong would
// hand the plugin the literal "{vault://...}"), a malformed reference, or
// one to a vault other than env (the only one kong.conf sets up here).
func CheckReferences(rec *Field, v any, path []string) Errors {
	var errs Errors
	switch x := v.(type) {
	case string:
		if !strings.HasPrefix(x, "{vault:") {
			return nil
		}
		if rec == nil || rec.Type != "string" || !rec.Referenceable {
			return Errors{{path, "vault reference in a field that is not referenceable (Kong would pass the literal string to the plugin)"}}
		}
		r, err := ParseReference(x)
		if err != nil {
			return Errors{{path, "bad vault reference: " + err.Error()}}
		}
		if r.Vault != "env" {
			return Errors{{path, fmt.Sprintf("bad vault reference: vault %q is not configured (only env)", r.Vault)}}
		}
	case []any:
		var el *Field
		if rec != nil {
			el = rec.Elements
		}
		for i, e := range x {
			errs = append(errs, CheckReferences(el, e, with(path, fmt.Sprintf("[%d]", i)))...)
		}
	case map[string]any:
		for _, k := range sortedKeys(x) {
			var sub *Field
			if rec != nil && rec.Type == "record" {
				sub = rec.Field(k)
			} else if rec != nil && rec.Type == "map" {
				sub = rec.Values
			}
			if rec != nil && rec.Type == "record" && sub == nil {
				continue // unknown field: reported by Validate
			}
			errs = append(errs, CheckReferences(sub, x[k], with(path, k))...)
		}
	}
	return errs
}
