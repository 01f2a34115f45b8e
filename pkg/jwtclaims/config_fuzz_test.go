package jwtclaims

import (
	"testing"

	"github.com/subgate/subgate/pkg/config"
)

// FuzzConfigDecode feeds arbitrary configs, as Kong would send them at
// instance start, to the jwt-claims declaration: no input may panic, and a
// config Decode accepts is accepted by Validate again.
func FuzzConfigDecode(f *testing.F) {
	f.Add([]byte(`{"jwks_url":"http://id/jwks","leeway_seconds":30,"route_id":"r"}`))
	f.Add([]byte(`{"keys":[{"kid":"a","algorithm":"HS256","secret":"{vault://env/X}"}]}`))
	f.Add([]byte(`{"keys":[{"algorithm":"none"}],"upstream_headers":{"X Bad":""}}`))
	f.Add([]byte(`{"log_decisions":"all","max_token_bytes":1e9}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var c Config
		config.Defaults(&c)
		if config.Decode(raw, &c) != nil {
			return
		}
		if err := config.Validate(&c); err != nil {
			t.Fatalf("accepted %s, then refused: %v", raw, err)
		}
	})
}
