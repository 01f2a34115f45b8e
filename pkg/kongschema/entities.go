package kongschema

// The declarative config's services and routes as Kong 3.9 reads them
// (kong/db/schema/entities/services.lua and routes.lua, with the router's
// default flavor, traditional_compatible; declarative nesting adds routes
// and plugins): a field Kong does not know (a typo such as `pathz:` or
// `urll:`) makes Kong refuse the whole file at load.

var entityFields = map[string]map[string]bool{
	"services": set("id", "created_at", "updated_at", "name", "retries", "protocol", "host", "port", "path",
		"connect_timeout", "write_timeout", "read_timeout", "tags", "client_certificate", "tls_verify",
		"tls_verify_depth", "ca_certificates", "enabled", "url", "routes", "plugins"),
	"routes": set("id", "created_at", "updated_at", "name", "protocols", "methods", "hosts", "paths", "headers",
		"https_redirect_status_code", "regex_priority", "strip_path", "path_handling", "preserve_host",
		"request_buffering", "response_buffering", "snis", "sources", "destinations", "tags", "service", "plugins"),
}

func set(names ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return m
}

// KnownField reports whether Kong knows field in an entity of kind
// ("services" or "routes"); other kinds are not modelled (true).
func KnownField(kind, field string) bool {
	fs, ok := entityFields[kind]
	return !ok || fs[field]
}

// RouteMatchFields are what an http(s) route must set one of (routes.lua's
// entity check: "must set one of 'methods', 'hosts', 'headers', 'paths',
// 'snis' when 'protocols' is 'https'").
var RouteMatchFields = []string{"methods", "hosts", "headers", "paths", "snis"}
