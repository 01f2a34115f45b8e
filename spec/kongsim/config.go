package kongsim

import (
	"encoding/json"
	"fmt"

	"github.com/subgate/subgate/pkg/kongschema"
)

// Meta is what Kong's plugins_iterator adds to every plugin config
// (get_plugin_config in kong/runloop/plugins_iterator.lua), plus the
// environment Kong's env vault sees (see vault.go for which one that is).
type Meta struct {
	RouteID, ServiceID, PluginID, InstanceName string
	Seq                                        int
	Env                                        map[string]string
}

// EncodeConfig produces the JSON Kong sends at cmd_start_instance for a
// plugin config from kong.yml: validated as Kong validates it at load
// (every error, see Validate), defaults filled, then read back as the
// plugins iterator reads it (Select: fields left null are absent,
// references resolved from m.Env), with Kong's metadata fields added.
// Metadata Kong leaves nil (no consumer, no instance name) is absent too:
// cjson.encode drops nil.
func EncodeConfig(info Info, given map[string]any, m Meta) ([]byte, error) {
	conf, _, err := ProcessConfig(info, given, m)
	if err != nil {
		return nil, err
	}
	return json.Marshal(conf)
}

// ProcessConfig is EncodeConfig before encoding, with the warnings Kong
// would log while resolving references.
func ProcessConfig(info Info, given map[string]any, m Meta) (map[string]any, []string, error) {
	s, err := SchemaOf(info)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", info.Name, err)
	}
	config, errs := s.Validate(given)
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("%s: %w", info.Name, errs)
	}
	out, warns := kongschema.Select(s.Entity.Field("config"), config, m.Env)
	for k, v := range map[string]any{"route_id": m.RouteID, "service_id": m.ServiceID,
		"plugin_instance_name": m.InstanceName, "__plugin_id": m.PluginID, "__ws_id": "default",
		"__key__": fmt.Sprintf("plugins:%s:%s:%s::::default", info.Name, m.RouteID, m.ServiceID), "__seq__": m.Seq} {
		if s, ok := v.(string); !ok || s != "" {
			out[k] = v
		}
	}
	return out, warns, nil
}

// SchemaOf parses the schema in a -dump Info. Info's struct carries the
// schema's name and fields; if it gains an `entity_checks` field (tagged
// json:"entity_checks"), the round trip through JSON carries it here too.
func SchemaOf(info Info) (*kongschema.Schema, error) {
	raw, err := json.Marshal(info.Schema)
	if err != nil {
		return nil, err
	}
	return kongschema.ParseSchema(raw)
}

// CheckMetaschema checks the schema of a -dump Info (see SchemaOf for what
// the Info carries).
func CheckMetaschema(info Info) error {
	raw, err := json.Marshal(info.Schema)
	if err != nil {
		return err
	}
	return kongschema.CheckMetaschemaJSON(raw)
}
