// Command user-context is the Kong plugin that asks the identity service
// for the caller's user context and forwards it upstream, caching every
// success locally and using the cached copy only when the identity service
// answers 503 (pkg/usercontext decides; README.md beside this file is its
// reference).
package main

import (
	"github.com/subgate/subgate/pkg/kongx"
	"github.com/subgate/subgate/pkg/usercontext"
)

var plugin = kongx.NewPlugin("user-context", kongx.PriorityUserContext, usercontext.New)

func main() { plugin.Serve() }
