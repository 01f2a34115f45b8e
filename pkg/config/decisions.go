package config

// The decision-logging modes of log_decisions.
const (
	LogDeny = "deny" // denials only: the allow path keeps its PDK-call count
	LogAll  = "all"  // every decision: one more PDK call on the allow path
	LogNone = "none"
)

// Decisions is the setting every plugin shares: which decisions are handed
// to Kong's log serializer (kong.log.set_serialize_value("subgate", ...)),
// where Kong's log plugins (file-log, http-log, ...) carry them. Each
// plugin's config embeds it.
type Decisions struct {
	LogDecisions string `json:"log_decisions" default:"deny" kong:"one_of=deny|all|none" doc:"Decisions handed to Kong's log serializer (key subgate): deny, all or none."`
}

// DecisionLogging is the mode (the interface kongx reads it through).
func (d Decisions) DecisionLogging() string { return d.LogDecisions }

// HTTPURL is the pattern of a URL the gateway calls (a JWKS, the identity
// service): http or https, with a host.
var HTTPURL = Pattern("http_url", "^https?://[^/?#%s]+", "expected an http:// or https:// URL with a host")
