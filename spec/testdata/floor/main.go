// Command floor is a test-only plugin server for the benchmarks (make
// bench-kong, spec/benchkong): the cost floor of subgate's work on the
// coaching route. Its access handler makes subgate's PDK calls with the
// same payloads (every request header with the same limit, the path, one
// set_headers of the same header names with values of the same sizes),
// the same Redis HGET as the ownership check and the same identity GET as
// the identity check (the same forwarded headers, transport and pool), and
// decides nothing: no token verification, no comparison, no audit line, no
// metrics. spec/benchkong holds it to subgate through Kong before it
// measures.
package main

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/Kong/go-pdk"

	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/kongx"
	"github.com/subgate/subgate/pkg/ownership"
	"github.com/subgate/subgate/pkg/redisconn"
)

// Config is the floor's plugin config.
type Config struct {
	Redis       redisconn.Config `json:"redis" kong:"required"`
	IdentityURL string           `json:"identity_url" kong:"required"`
	// Upstream is what set_headers sends, each name with its value; Remove
	// the names it clears, as subgate clears an owned header it has no value
	// for (the payment token's).
	Upstream map[string]string `json:"upstream"`
	Remove   []string          `json:"remove"`
	// ContextHeader gets the identity service's answer, as subgate's
	// context_header does.
	ContextHeader string `json:"context_header" default:"X-User-Context"`

	store *ownership.Store
}

// identity is set up as pkg/usercontext's client is.
var identity = func() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.Proxy = nil
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}()

func New() any {
	c := &Config{}
	config.Defaults(c)
	return c
}

// UnmarshalJSON builds the Redis client once per instance.
func (c *Config) UnmarshalJSON(b []byte) error {
	type fields Config
	if err := config.Decode(b, (*fields)(c)); err != nil {
		return err
	}
	rdb, err := redisconn.Shared(c.Redis, "redis")
	if err != nil {
		return err
	}
	c.store = ownership.NewStore(rdb, "")
	return nil
}

// forwarded are user-context's default forward_headers.
var forwarded = []string{"Authorization", "Cookie"}

// Access makes subgate's calls and decides nothing.
func (c *Config) Access(kong *pdk.PDK) {
	headers, _ := kong.Request.GetHeaders(1000) // kongx reads with Kong's limit
	path, _ := kong.Request.GetPath()
	id, _ := strconv.ParseInt(path[strings.LastIndexByte(path, '/')+1:], 10, 64)
	_, _, _ = c.store.Lookup(context.Background(), "DE", id)
	body := ""
	if req, err := http.NewRequest("GET", c.IdentityURL, nil); err == nil {
		for _, name := range forwarded {
			if v := headers[strings.ToLower(name)]; len(v) > 0 && v[0] != "" {
				req.Header.Set(name, v[0])
			}
		}
		req.Header.Set("Accept", "application/json")
		if resp, err := identity.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = strings.TrimSpace(string(b))
		}
	}
	up := make(map[string][]string, len(c.Upstream)+len(c.Remove)+1)
	for name, v := range c.Upstream {
		up[name] = []string{v}
	}
	for _, name := range c.Remove {
		up[name] = []string{}
	}
	up[c.ContextHeader] = []string{body}
	_ = kong.ServiceRequest.SetHeaders(up)
}

func main() { kongx.Serve("floor", New, 1000, Config{}) }
