package config

import "testing"

// FuzzDecode feeds arbitrary configs to Decode (what Kong sends at instance
// start): no input may panic, and a config it accepts passes Validate again
// (decoding leaves nothing a second check would refuse).
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"inner":{"addr":["a"]}}`))
	f.Add([]byte(`{"inner":{"addr":["a"]},"mode":"safe","leeway":600,"headers":{"X":"y"},"secret":"s"}`))
	f.Add([]byte(`{"inner":null,"leeway":-1}`))
	f.Add([]byte(`{"headers":[1]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var s sample
		Defaults(&s)
		if Decode(raw, &s) != nil {
			return
		}
		if err := Validate(&s); err != nil {
			t.Fatalf("accepted %s, then refused: %v", raw, err)
		}
	})
}
