// Command floor is a test-only plugin server for the benchmarks in spec/:
// the cost floor of subgate's work. Its access handler makes the same PDK
// calls as subgate on a route with every section (every request header,
// the path, one set_headers of the same owned headers), the same Redis
// HGET as the ownership check and the same identity GET as the identity
// check, and decides nothing: no token verification, no comparison, no
// audit line, no metrics.
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

	store *ownership.Store
}

var identity = func() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.Proxy = nil
	return &http.Client{Transport: tr}
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

// Access makes subgate's calls and decides nothing.
func (c *Config) Access(kong *pdk.PDK) {
	headers, _ := kong.Request.GetHeaders(-1)
	path, _ := kong.Request.GetPath()
	id, _ := strconv.ParseInt(path[strings.LastIndexByte(path, '/')+1:], 10, 64)
	_, _, _ = c.store.Lookup(context.Background(), "DE", id)
	body := ""
	if req, err := http.NewRequest("GET", c.IdentityURL, nil); err == nil {
		if v := headers["authorization"]; len(v) > 0 {
			req.Header.Set("Authorization", v[0])
		}
		if resp, err := identity.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
		}
	}
	_ = kong.ServiceRequest.SetHeaders(map[string][]string{
		"X-Customer-Id": {"floor"}, "X-Country": {"DE"}, "X-User-Context": {strings.TrimSpace(body)},
		"X-User-Context-Source": {"identity"}, "X-User-Id": {"floor"}, "X-User-Country": {"DE"},
	})
}

func main() { kongx.Serve("floor", New, 1000, Config{}) }
