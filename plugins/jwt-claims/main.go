// Command jwt-claims is the Kong plugin that verifies the bearer JWT and
// hands its claims to the plugins after it and to the upstream
// (pkg/jwtclaims decides; README.md beside this file is its reference).
package main

import (
	"github.com/subgate/subgate/pkg/jwtclaims"
	"github.com/subgate/subgate/pkg/kongx"
)

var plugin = kongx.NewPlugin("jwt-claims", kongx.PriorityJWTClaims, jwtclaims.New)

func main() { plugin.Serve() }
