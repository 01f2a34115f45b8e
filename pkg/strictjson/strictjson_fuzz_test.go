package strictjson

import (
	"bytes"
	"encoding/json"
	"testing"
)

// decoderUniqueMembers is the reference: the same rule on encoding/json's
// token reader (what UniqueMembers replaced for speed).
func decoderUniqueMembers(d *json.Decoder) error {
	t, err := d.Token()
	if err != nil {
		return err
	}
	if delim, ok := t.(json.Delim); ok {
		switch delim {
		case '{':
			seen := map[string]bool{}
			for d.More() {
				k, err := d.Token()
				if err != nil {
					return err
				}
				if name, _ := k.(string); seen[name] {
					return ErrDuplicate
				} else {
					seen[name] = true
				}
				if err := decoderUniqueMembers(d); err != nil {
					return err
				}
			}
		case '[':
			for d.More() {
				if err := decoderUniqueMembers(d); err != nil {
					return err
				}
			}
		}
		_, err = d.Token()
	}
	return err
}

// FuzzUniqueMembers: on every valid JSON text the scanner agrees with the
// reference (a duplicate found by one is found by the other, and valid
// JSON without one passes), and no input makes it panic.
func FuzzUniqueMembers(f *testing.F) {
	for _, s := range []string{
		`{"a":1}`, `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `{"a\"b":1,"a\"b":2}`, `{"x":{"a":1,"a":2}}`,
		`[{"a":1},{"a":1}]`, ` { "a" : [ 1 , "b" , null , true , -1.5e3 ] , "b" : { } } `, `"s"`, `12`, `{}`, `[]`,
		`{"a":"\\"}`, `{"":1,"":2}`, `{"é":1,"\u00e9":2}`, `{"a":1} {"b":2}`, `{"a":}`, `[1,]`, `{"a" 1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := UniqueMembers(b)
		if !json.Valid(b) {
			return // every caller decodes it too, and refuses it; only no panic matters
		}
		want := decoderUniqueMembers(json.NewDecoder(bytes.NewReader(b)))
		if (got == nil) != (want == nil) {
			t.Fatalf("%q: scanner %v, encoding/json %v", b, got, want)
		}
	})
}
