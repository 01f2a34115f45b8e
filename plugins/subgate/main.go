// Command subgate is the Kong plugin that runs the checks of the four-plugin
// chain (jwt-claims, subscription-owner, payment-token, user-context) in one
// access event, in the same order, each configured by its own section with
// exactly that plugin's config; only the PDK traffic differs (pkg/chain
// decides; README.md beside this file is its reference).
package main

import (
	"github.com/subgate/subgate/pkg/chain"
	"github.com/subgate/subgate/pkg/kongx"
)

var plugin = kongx.NewPlugin("subgate", kongx.PrioritySubgate, chain.New)

func main() { plugin.Serve() }
