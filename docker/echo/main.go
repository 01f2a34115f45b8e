// Command echo is the demo upstream: it answers with the request it got.
package main

import "github.com/subgate/subgate/docker/demosvc"

func main() { demosvc.Serve("echo", demosvc.Echo()) }
