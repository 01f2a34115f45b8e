package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// An escaped surrogate passes only as a high one directly followed by an
// escaped low one, in names and values alike; an escaped backslash before
// "u" is no escape.
func TestLoneSurrogatesAreRefused(t *testing.T) {
	for text, want := range map[string]error{
		`"\u0041\u00e9"`:            nil,
		`"\ud83d\ude00"`:            nil,
		`"\uD83D\uDE00"`:            nil,
		`{"\ud83d\ude00":"\u00e9"}`: nil,
		`"\\ud800"`:                 nil,
		`"\ud800"`:                  ErrSurrogate,
		`"\udc00"`:                  ErrSurrogate,
		`"a\ud800b"`:                ErrSurrogate,
		`"\ud800\u0041"`:            ErrSurrogate,
		`"\ud800\ud800"`:            ErrSurrogate,
		`"\ud800\n"`:                ErrSurrogate,
		`"\ud83d\ude00\udc00"`:      ErrSurrogate,
		`"\\\ud800"`:                ErrSurrogate,
		`{"\ud800":1}`:              ErrSurrogate,
		`[1,{"a":["\udfff"]}]`:      ErrSurrogate,
		`{"\ud800":1,"\udbff":2}`:   ErrSurrogate, // both read U+FFFD in Go, two names elsewhere
	} {
		if got := Unambiguous([]byte(text)); !errors.Is(got, want) || (want == nil) != (got == nil) {
			t.Errorf("%s: %v, want %v", text, got, want)
		}
	}
}

// decoderUniqueMembers is the reference: the same rule on encoding/json's
// token reader (what Unambiguous replaced for speed), without the surrogate rule.
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

// FuzzUnambiguous: on every valid JSON text the scanner agrees with the
// reference (a duplicate found by one is found by the other, and valid
// JSON without one passes), finds a lone surrogate only where encoding/json
// reads U+FFFD, and no input makes it panic.
func FuzzUnambiguous(f *testing.F) {
	for _, s := range []string{
		`{"a":1}`, `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `{"a\"b":1,"a\"b":2}`, `{"x":{"a":1,"a":2}}`,
		`[{"a":1},{"a":1}]`, ` { "a" : [ 1 , "b" , null , true , -1.5e3 ] , "b" : { } } `, `"s"`, `12`, `{}`, `[]`,
		`{"a":"\\"}`, `{"":1,"":2}`, `"\ud800"`, `{"\ud83d\ude00":1}`, `"\\ud800"`, `{"é":1,"\u00e9":2}`, `{"a":1} {"b":2}`, `{"a":}`, `[1,]`, `{"a" 1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := Unambiguous(b)
		if !json.Valid(b) {
			return // every caller decodes it too, and refuses it; only no panic matters
		}
		if errors.Is(got, ErrSurrogate) {
			var v any // a lone surrogate is read as U+FFFD by encoding/json
			d := json.NewDecoder(bytes.NewReader(b))
			d.UseNumber()
			if d.Decode(&v) != nil || !strings.Contains(string(mustMarshal(t, v)), "\ufffd") {
				t.Fatalf("%q: a lone surrogate where encoding/json reads none", b)
			}
			return
		}
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber() // 1E1000 is valid JSON, out of a float64's range
		want := decoderUniqueMembers(d)
		if (got == nil) != (want == nil) {
			t.Fatalf("%q: scanner %v, encoding/json %v", b, got, want)
		}
	})
}

func mustMarshal(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Member finds top-level members only, by decoded name, and reads nothing
// out of what is not an object.
func TestMember(t *testing.T) {
	doc := ` { "a" : 1 , "n" : { "b" : 2 } , "l" : [ "b" , {"b":3} ] , "\u0063" : "x\"y" , "e" : {} } `
	for name, want := range map[string]string{"a": "1", "n": `{ "b" : 2 }`, "l": `[ "b" , {"b":3} ]`, "c": `"x\"y"`, "e": "{}"} {
		if got, ok := Member([]byte(doc), name); !ok || string(got) != want {
			t.Errorf("%s: %q %v, want %q", name, got, ok, want)
		}
	}
	for _, miss := range []struct{ doc, name string }{{doc, "b"}, {doc, "A"}, {doc, ""}, {`["a",1]`, "a"}, {`"a"`, "a"}, {`{}`, "a"}, {``, "a"}} {
		if got, ok := Member([]byte(miss.doc), miss.name); ok {
			t.Errorf("%s in %s: %q", miss.name, miss.doc, got)
		}
	}
}

// FuzzMember: on a text Unambiguous and encoding/json accept, each
// top-level member Member returns decodes to what encoding/json reads for
// it, and Member finds every member encoding/json reads.
func FuzzMember(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":{"a":2},"b":[1,{"c":3}]}`, ` { "\u0061" : "x" , "b" : null } `, `{"":true}`, `[1]`, `"a"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var whole map[string]json.RawMessage
		if Unambiguous(b) != nil || json.Unmarshal(b, &whole) != nil || whole == nil {
			return
		}
		for name, want := range whole {
			got, ok := Member(b, name)
			if !ok {
				t.Fatalf("%q: member %q not found", b, name)
			}
			if !bytes.Equal(compact(t, got), compact(t, want)) {
				t.Fatalf("%q: member %q is %q, encoding/json reads %q", b, name, got, want)
			}
		}
	})
}

func compact(t *testing.T, b []byte) []byte {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	return out.Bytes()
}
