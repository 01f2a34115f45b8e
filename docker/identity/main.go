// Command identity is the demo identity service (see demosvc.Identity).
package main

import (
	"log"
	"net/http"
	"os"

	"github.com/subgate/subgate/docker/demosvc"
)

func main() {
	addr := os.Getenv("LISTEN")
	if addr == "" {
		addr = ":8080"
	}
	id, err := demosvc.NewIdentity()
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("identity listening on %s", addr)
	log.Fatal(http.ListenAndServe(addr, id.Handler()))
}
