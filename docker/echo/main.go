// Command echo is the demo upstream: it answers with the request it got.
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
	log.Printf("echo listening on %s", addr)
	log.Fatal(http.ListenAndServe(addr, demosvc.Echo()))
}
