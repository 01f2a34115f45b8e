package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// Kong's error bodies (kong/tools/http.lua ERROR_TEMPLATES), by the MIME
// type get_response_type picks.
var errorTemplates = map[string]string{
	"application/json; charset=utf-8": "{\n  \"message\":\"%s\",\n  \"request_id\":\"%s\"\n}",
	"text/plain; charset=utf-8":       "%s\nrequest_id: %s\n",
	"text/html; charset=utf-8": "<!doctype html>\n<html>\n  <head>\n    <meta charset=\"utf-8\">\n    <title>Error</title>\n  </head>\n" +
		"  <body>\n    <h1>Error</h1>\n    <p>%s.</p>\n    <p>request_id: %s</p>\n  </body>\n</html>\n",
	"application/xml; charset=utf-8": "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<error>\n  <message>%s</message>\n  <requestid>%s</requestid>\n</error>\n",
}

var mimeTypes = map[string]string{
	"text/html": "text/html; charset=utf-8", "application/json": "application/json; charset=utf-8",
	"text/plain": "text/plain; charset=utf-8", "application/xml": "application/xml; charset=utf-8",
	"application": "application/json; charset=utf-8", "text": "text/plain; charset=utf-8",
}

const defaultMIME = "application/json; charset=utf-8"

var acceptValue = regexp.MustCompile(`(?i)^((?:[a-z0-9][a-z0-9-!#$&^_+.]+|\*)/(?:[a-z0-9][a-z0-9-!#$&^_+.]+|\*))(?:\s*;\s*q=(1(?:\.0{0,3})?|0(?:\.\d{0,3})?)|\s*;\s*[a-z0-9][a-z0-9-!#$&^_+.]+(?:=[^;]*)?)*`)

// responseType is tools_http.get_response_type: the Accept value of the
// highest quality whose type Kong knows, JSON otherwise.
func responseType(accept []string) string {
	out := defaultMIME
	if len(accept) == 0 {
		return out
	}
	best := 0.0
	for _, v := range strings.Split(strings.Join(accept, ","), ",") {
		m := acceptValue.FindStringSubmatch(strings.TrimSpace(v))
		if m == nil {
			continue
		}
		q := 1.0
		if m[2] != "" {
			q, _ = strconv.ParseFloat(m[2], 64)
		}
		if q > best {
			best = q
			if t := mimeType(m[1]); t != "" {
				out = t
			}
		}
	}
	return out
}

// mimeType is tools_http.get_mime_type with its default.
func mimeType(media string) string {
	typ, sub, ok := strings.Cut(strings.ToLower(media), "/")
	switch {
	case !ok:
		return defaultMIME
	case sub == "*" && typ == "*":
		return defaultMIME
	case sub == "*":
		if t, ok := mimeTypes[typ]; ok {
			return t
		}
		return defaultMIME
	}
	if t, ok := mimeTypes[media]; ok {
		return t
	}
	return defaultMIME
}

func writeError(w http.ResponseWriter, status int, mime, msg, id string) {
	w.Header().Set("Content-Type", mime)
	w.Header().Set("X-Kong-Request-Id", id)
	w.WriteHeader(status)
	fmt.Fprintf(w, errorTemplates[mime], msg, id)
}

// responseError is kong.response.error (kong/pdk/response.lua): the body in
// the type the Accept header asks for, JSON without one.
func responseError(w http.ResponseWriter, r *http.Request, id string, status int, msg string) {
	writeError(w, status, responseType(r.Header.Values("Accept")), msg, id)
}

// errorPage is Kong's error handler (kong/error_handlers.lua), which answers
// what nginx refuses before any plugin runs: the type from the Accept
// header, else from Content-Type, else error_default_type (text/plain).
func errorPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	accept := r.Header.Values("Accept")
	if len(accept) == 0 {
		accept = r.Header.Values("Content-Type")
	}
	mime := "text/plain; charset=utf-8"
	if len(accept) > 0 {
		mime = responseType(accept)
	}
	writeError(w, status, mime, msg, newID())
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// nginx's limits on the request head as Kong 3.9.3 builds it: a header line
// must fit in one 8k buffer and all lines in four (client_header_buffer_size
// 1k, large_client_header_buffers 4 8k); at most 1000 header lines
// (max_headers, added by Kong's nginx-1.25.3_17-CVE-2026-49975 patch); each
// answered 494, which the error handler turns into 400.
const (
	nginxHeaderLine  = 8 << 10
	nginxHeaderTotal = 4 * nginxHeaderLine
	nginxMaxHeaders  = 1000
)

// uniqueHeaders are the headers nginx refuses to see twice ("client sent
// duplicate header line": 400), ngx_http_process_unique_header_line and
// ngx_http_process_host in src/http/ngx_http_request.c.
var uniqueHeaders = []string{"Host", "If-Modified-Since", "If-Unmodified-Since", "If-Match", "If-None-Match",
	"Content-Length", "Content-Range", "If-Range", "Transfer-Encoding", "Expect", "Authorization"}

// nginxRefuses is what nginx answers a request head with before Kong runs
// (0: nothing). h holds every header line, Host among them. Go's server
// does not keep the wire bytes, so each line is counted as "name:
// value\r\n": exact for the line limit and the count, an approximation of
// nginx's buffer packing for the total.
func nginxRefuses(h http.Header) (int, string) {
	for _, name := range uniqueHeaders {
		if len(h.Values(name)) > 1 {
			return http.StatusBadRequest, "Bad request"
		}
	}
	lines, total := 0, 0
	for k, vs := range h {
		for _, v := range vs {
			n := len(k) + len(": ") + len(v) + len("\r\n")
			if n > nginxHeaderLine {
				return http.StatusBadRequest, "Request header or cookie too large"
			}
			total += n
			lines++
		}
	}
	if total > nginxHeaderTotal || lines > nginxMaxHeaders {
		return http.StatusBadRequest, "Request header or cookie too large"
	}
	return 0, ""
}
