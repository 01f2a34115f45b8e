package kongx

// What every plugin binary reports to Kong.

// Version of the subgate plugins, reported in each plugin's -dump info.
const Version = "0.1.0"

// Priorities fix the order Kong runs the plugins in (highest first): after
// Kong's jwt (1450) and oauth2 (1400) plugins, before acl (950) and
// rate-limiting (910), with room for other plugins between ours.
const (
	PriorityJWTClaims         = 1300
	PrioritySubscriptionOwner = 1250
	PriorityPaymentToken      = 1200
	PriorityUserContext       = 1150
	// PrioritySubgate runs the whole chain in one event, where its first
	// plugin runs.
	PrioritySubgate = PriorityJWTClaims
)
