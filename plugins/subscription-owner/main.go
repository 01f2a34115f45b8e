// Command subscription-owner is the Kong plugin that lets a request through
// only when the customer verified by jwt-claims owns the subscription named
// in the URL, by a Redis lookup of the {country}:{subscription_id} pair
// (pkg/ownership decides; README.md beside this file is its reference).
package main

import (
	"github.com/subgate/subgate/pkg/kongx"
	"github.com/subgate/subgate/pkg/ownership"
)

var plugin = kongx.NewPlugin("subscription-owner", kongx.PrioritySubscriptionOwner, ownership.New)

func main() { plugin.Serve() }
