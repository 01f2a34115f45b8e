package kongsim

import (
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/structpb"
)

// Kong's pb_rpc.lua encodes replies with lua-protobuf, which writes a Lua
// string into a protobuf string field byte for byte: a header value or a
// decoded path that is not UTF-8 reaches the plugin as sent, and go-pdk's
// decoding refuses it (measured on Kong 3.9.3). Go's proto.Marshal would
// refuse to encode it at all, so the replies carrying client bytes are
// written here as lua-protobuf writes them.

// rawString is a kong_plugin_protocol.String{V: s}, s unchecked.
func rawString(s string) []byte {
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// rawStruct is a google.protobuf.Struct of strings and lists of strings
// (what headersStruct builds), the strings unchecked.
func rawStruct(st *structpb.Struct) []byte {
	var out []byte
	for name, v := range st.GetFields() {
		var entry []byte
		entry = protowire.AppendTag(entry, 1, protowire.BytesType)
		entry = protowire.AppendString(entry, name)
		entry = protowire.AppendTag(entry, 2, protowire.BytesType)
		entry = protowire.AppendBytes(entry, rawValue(v))
		out = protowire.AppendTag(out, 1, protowire.BytesType)
		out = protowire.AppendBytes(out, entry)
	}
	return out
}

// rawValue is a google.protobuf.Value holding a string (field 3) or a list
// of them (field 6, its values field 1).
func rawValue(v *structpb.Value) []byte {
	if l := v.GetListValue(); l != nil {
		var list []byte
		for _, e := range l.GetValues() {
			list = protowire.AppendTag(list, 1, protowire.BytesType)
			list = protowire.AppendBytes(list, rawValue(e))
		}
		b := protowire.AppendTag(nil, 6, protowire.BytesType)
		return protowire.AppendBytes(b, list)
	}
	b := protowire.AppendTag(nil, 3, protowire.BytesType)
	return protowire.AppendString(b, v.GetStringValue())
}
