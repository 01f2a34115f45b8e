package kongx

// Client bytes that are not UTF-8. Kong's pb_rpc.lua hands the plugin
// header values and the decoded path byte for byte (lua-protobuf checks
// nothing), and go-pdk's protobuf refuses a string field that is not UTF-8:
// the read fails as a whole, so the plugin cannot see any header, or the
// path, of such a request. A client can send those bytes at will (a Latin-1
// cookie, "/x%FF", which Kong decodes), so the answer is a 400 of its own,
// not a 500, and the cause names what was unreadable: a second, raw read of
// the same reply, on this denial only.

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/Kong/go-pdk"
	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/subgate/subgate/pkg/denial"
)

// notUTF8 reports whether a PDK read failed because go-pdk's protobuf
// refused Kong's reply for a string that is not UTF-8 ("proto: field
// google.protobuf.Value.string_value contains invalid UTF-8"), rather than
// for a broken connection.
func notUTF8(err error) bool {
	return errors.Is(err, proto.Error) && strings.Contains(err.Error(), "invalid UTF-8")
}

// maxCauseBytes bounds what of the client's request a cause quotes.
const maxCauseBytes = 200

// badHeaders is the denial of a request whose header table go-pdk could
// not decode; the cause names the headers at fault (never their values,
// which may be credentials), read raw from a second get_headers.
func badHeaders(kong *pdk.PDK) *denial.Denial {
	d := denial.New(denial.RequestBytesInvalid, "a request header value is not valid UTF-8")
	raw, err := rawReply(kong, "kong.request.get_headers", &pb.Int{V: maxHeaders})
	names := nonUTF8Headers(raw)
	switch {
	case err != nil:
		return d.WithCause("the request headers are not valid UTF-8 (reading them raw: " + err.Error() + ")")
	case len(names) == 0:
		return d.WithCause("the request headers are not valid UTF-8")
	}
	return d.WithCause("not valid UTF-8 in the value of request header " + strings.Join(names, ", "))
}

// badPath is the denial of a request whose normalized path (Kong decodes
// percent-escapes) go-pdk could not decode; the cause quotes it, escaped.
func badPath(kong *pdk.PDK) *denial.Denial {
	d := denial.New(denial.RequestBytesInvalid, "the request path is not valid UTF-8 once decoded")
	raw, err := rawReply(kong, "kong.request.get_path", nil)
	if err != nil {
		return d.WithCause("the decoded request path is not valid UTF-8 (reading it raw: " + err.Error() + ")")
	}
	path, _ := stringField(raw, 1)
	return d.WithCause("the decoded request path is not valid UTF-8: " + quote(path))
}

// rawReply makes a PDK call and returns Kong's reply undecoded: an empty
// message keeps every field as unknown bytes, which nothing validates.
func rawReply(kong *pdk.PDK, method string, args proto.Message) ([]byte, error) {
	var m emptypb.Empty
	if err := kong.Request.Ask(method, args, &m); err != nil {
		return nil, err
	}
	return m.ProtoReflect().GetUnknown(), nil
}

// nonUTF8Headers names, sorted, the headers of a raw get_headers reply (a
// google.protobuf.Struct: field 1, the entries; an entry's key is field 1
// and its Value field 2; a Value's string is field 3 and its list field 6,
// whose Values are field 1) with a value that is not UTF-8. A name that is
// not UTF-8 itself is quoted.
func nonUTF8Headers(st []byte) []string {
	var names []string
	for _, entry := range fields(st, 1) {
		key, _ := stringField(entry, 1)
		value, _ := stringField(entry, 2)
		if !utf8.ValidString(key) || !valueUTF8([]byte(value)) {
			if utf8.ValidString(key) {
				names = append(names, key)
			} else {
				names = append(names, quote(key))
			}
		}
	}
	sort.Strings(names)
	return names
}

// valueUTF8 reports whether a google.protobuf.Value holds only UTF-8
// strings.
func valueUTF8(v []byte) bool {
	for _, s := range fields(v, 3) {
		if !utf8.Valid(s) {
			return false
		}
	}
	for _, list := range fields(v, 6) {
		for _, e := range fields(list, 1) {
			if !valueUTF8(e) {
				return false
			}
		}
	}
	return true
}

// fields returns the payloads of the length-delimited fields numbered n of
// a message, in order; it stops at the first malformed byte.
func fields(msg []byte, n protowire.Number) [][]byte {
	var out [][]byte
	for len(msg) > 0 {
		num, typ, l := protowire.ConsumeTag(msg)
		if l < 0 {
			return out
		}
		msg = msg[l:]
		if typ == protowire.BytesType {
			b, l := protowire.ConsumeBytes(msg)
			if l < 0 {
				return out
			}
			if num == n {
				out = append(out, b)
			}
			msg = msg[l:]
			continue
		}
		if l = protowire.ConsumeFieldValue(num, typ, msg); l < 0 {
			return out
		}
		msg = msg[l:]
	}
	return out
}

// stringField is the last field n of msg (protobuf's rule for a repeated
// scalar), as bytes in a string.
func stringField(msg []byte, n protowire.Number) (string, bool) {
	f := fields(msg, n)
	if len(f) == 0 {
		return "", false
	}
	return string(f[len(f)-1]), true
}

// quote escapes s for a log line, bounded.
func quote(s string) string {
	if len(s) > maxCauseBytes {
		return strconv.QuoteToASCII(s[:maxCauseBytes]) + fmt.Sprintf(" (%d bytes)", len(s))
	}
	return strconv.QuoteToASCII(s)
}
