// Command identity is the demo identity service (see demosvc.Identity).
package main

import (
	"log"

	"github.com/subgate/subgate/docker/demosvc"
)

func main() {
	id, err := demosvc.NewIdentity()
	if err != nil {
		log.Fatal(err)
	}
	demosvc.Serve("identity", id.Handler())
}
