// Command empty is a test-only plugin server for the benchmarks (make
// bench-kong): an access handler that makes no PDK call, so a request costs
// Kong one plugin-server event and nothing else.
package main

import (
	"github.com/Kong/go-pdk"

	"github.com/subgate/subgate/pkg/kongx"
)

// Config is the empty plugin's config: nothing.
type Config struct{}

func New() any { return &Config{} }

// Access does nothing.
func (*Config) Access(*pdk.PDK) {}

func main() { kongx.Serve("empty", New, 1000, Config{}) }
