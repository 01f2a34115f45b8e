// Command payment-token is the Kong plugin that admits a request only with a
// valid payment-access-token from the payment service: signature with the
// algorithm fixed per key, expiry, issued to the customer jwt-claims
// verified, granting the route's entitlements, and not revoked by a payment
// event since it was issued (pkg/paytoken decides; README.md beside this
// file is its reference).
package main

import (
	"github.com/subgate/subgate/pkg/kongx"
	"github.com/subgate/subgate/pkg/paytoken"
)

var plugin = kongx.NewPlugin("payment-token", kongx.PriorityPaymentToken, paytoken.New)

func main() { plugin.Serve() }
