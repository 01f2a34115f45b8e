package kongsim

import (
	"strconv"
	"strings"
)

// reserved are the characters whose percent-encoding Kong keeps (upper-cased)
// when normalizing a path (kong/tools/uri.lua RESERVED_CHARS).
const reserved = "!*'();:@&=+$,/?%#[]"

// NormalizePath is kong.request.get_path(): the raw path normalized per
// RFC 3986 section 6 as Kong does it: percent-encoded unreserved characters
// decoded, reserved ones kept encoded and upper-cased, dot segments removed,
// duplicate slashes merged.
func NormalizePath(raw string) string {
	if raw == "" || raw == "/" {
		return raw
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		if raw[i] == '%' && i+2 < len(raw) {
			if n, err := strconv.ParseUint(raw[i+1:i+3], 16, 8); err == nil {
				if strings.IndexByte(reserved, byte(n)) >= 0 {
					b.WriteString(strings.ToUpper(raw[i : i+3]))
				} else {
					b.WriteByte(byte(n))
				}
				i += 2
				continue
			}
		}
		b.WriteByte(raw[i])
	}
	return removeDots(b.String())
}

// removeDots is RFC 3986 5.2.4 with duplicate slashes merged, as Kong's
// normalize(uri, true).
func removeDots(in string) string {
	var out []string
	trailing := strings.HasSuffix(in, "/") || strings.HasSuffix(in, "/.") || strings.HasSuffix(in, "/..")
	for _, seg := range strings.Split(in, "/") {
		switch seg {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, seg)
		}
	}
	p := "/" + strings.Join(out, "/")
	if trailing && p != "/" {
		p += "/"
	}
	return p
}
