package kongsim

import (
	"encoding/json"
	"fmt"
	"sort"
)

// field is one entry of a schema's fields array: {"name": {"type": ...}}.
type field struct {
	Type     string                       `json:"type"`
	Fields   []map[string]json.RawMessage `json:"fields"`
	Elements *field                       `json:"elements"`
	Keys     *field                       `json:"keys"`
	Values   *field                       `json:"values"`
}

// Meta is what Kong's plugins_iterator adds to every plugin config.
type Meta struct {
	RouteID, ServiceID, PluginID, InstanceName string
	Seq                                        int
}

// EncodeConfig produces the JSON Kong sends at cmd_start_instance: the
// plugin's config validated against the schema from -dump, with every
// schema field present (null where kong.yml sets nothing, as Kong's schema
// processing leaves it), and Kong's metadata fields added. An unknown field
// or a wrong type is an error, as Kong refuses such a declarative config.
func EncodeConfig(info Info, given map[string]any, m Meta) ([]byte, error) {
	var config *field
	for _, f := range info.Schema.Fields {
		if raw, ok := f["config"]; ok {
			config = &field{}
			if err := json.Unmarshal(raw, config); err != nil {
				return nil, err
			}
		}
	}
	if config == nil {
		return nil, fmt.Errorf("%s: schema has no config record", info.Name)
	}
	out, err := record(info.Name+".config", config, given)
	if err != nil {
		return nil, err
	}
	for k, v := range map[string]any{"route_id": m.RouteID, "service_id": m.ServiceID, "consumer_id": nil,
		"plugin_instance_name": m.InstanceName, "__plugin_id": m.PluginID, "__ws_id": "default",
		"__key__": fmt.Sprintf("plugins:%s:%s:%s::::default", info.Name, m.RouteID, m.ServiceID), "__seq__": m.Seq} {
		if s, ok := v.(string); ok && s == "" {
			v = nil
		}
		out[k] = v
	}
	return json.Marshal(out)
}

func record(path string, f *field, given map[string]any) (map[string]any, error) {
	out := map[string]any{}
	known := map[string]bool{}
	for _, entry := range f.Fields {
		for name, raw := range entry {
			var sub field
			if err := json.Unmarshal(raw, &sub); err != nil {
				return nil, err
			}
			known[name] = true
			v, ok := given[name]
			if !ok || v == nil {
				out[name] = nil
				continue
			}
			cv, err := check(path+"."+name, &sub, v)
			if err != nil {
				return nil, err
			}
			out[name] = cv
		}
	}
	var unknown []string
	for name := range given {
		if !known[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("%s: unknown field(s) %v", path, unknown)
	}
	return out, nil
}

func check(path string, f *field, v any) (any, error) {
	bad := func() error { return fmt.Errorf("%s: expected a %s, got %T", path, f.Type, v) }
	switch f.Type {
	case "string":
		if _, ok := v.(string); !ok {
			return nil, bad()
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return nil, bad()
		}
	case "integer":
		switch n := v.(type) {
		case int:
		case float64:
			if n != float64(int64(n)) {
				return nil, bad()
			}
		default:
			return nil, bad()
		}
	case "number":
		switch v.(type) {
		case int, float64:
		default:
			return nil, bad()
		}
	case "array":
		l, ok := v.([]any)
		if !ok {
			return nil, bad()
		}
		out := make([]any, len(l))
		for i, e := range l {
			ce, err := check(fmt.Sprintf("%s[%d]", path, i), f.Elements, e)
			if err != nil {
				return nil, err
			}
			out[i] = ce
		}
		return out, nil
	case "map":
		m, ok := v.(map[string]any)
		if !ok {
			return nil, bad()
		}
		out := map[string]any{}
		for k, e := range m {
			ce, err := check(path+"."+k, f.Values, e)
			if err != nil {
				return nil, err
			}
			out[k] = ce
		}
		return out, nil
	case "record":
		m, ok := v.(map[string]any)
		if !ok {
			return nil, bad()
		}
		return record(path, f, m)
	default:
		return nil, fmt.Errorf("%s: schema type %q not modelled", path, f.Type)
	}
	return v, nil
}
