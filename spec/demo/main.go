// Command demo runs subgate on this machine without Docker or Kong: Redis,
// the plugin servers from bin/, the demo identity and echo services, and a
// local gateway on :8000 serving kong/kong.yml through the real plugin
// binaries. It prints tokens and curl commands to try, and stops everything
// it started on Ctrl-C. The gateway is a development stand-in for Kong
// (spec/gateway); production runs the same binaries in Kong.
//
//	make demo                 # builds, then: go run ./spec/demo
//	go run ./spec/demo -selftest   # run every printed command and check its answer
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/subgate/subgate/spec/stack"
)

func main() {
	bin := flag.String("bin", "bin", "directory of the compiled plugin binaries (make build)")
	kongYML := flag.String("kong", "kong/kong.yml", "declarative Kong config to serve")
	seed := flag.String("seed", stack.SeedCSV, "ownership pairs to import (CSV)")
	gw := flag.String("gateway", "127.0.0.1:8000", "gateway listen address")
	admin := flag.String("admin", "127.0.0.1:8001", "Admin API (schemas, POST /config) listen address, as Kong's")
	identity := flag.String("identity", "127.0.0.1:8081", "demo identity service listen address")
	payment := flag.String("payment", "127.0.0.1:8082", "demo payment service listen address")
	echo := flag.String("echo", "127.0.0.1:8083", "demo upstream listen address")
	selftest := flag.Bool("selftest", false, "run the walkthrough's commands, check each answer, and exit")
	embedded := flag.Bool("miniredis", false, "use the embedded miniredis even when redis-server is installed")
	flag.Parse()

	_, err := exec.LookPath("redis-server")
	fmt.Println("subgate demo: starting")
	st, err := stack.Start(stack.Options{BinDir: *bin, KongYML: *kongYML, SeedCSV: *seed, GatewayAddr: *gw, AdminAddr: *admin,
		IdentityAddr: *identity, PaymentAddr: *payment, EchoAddr: *echo, Miniredis: err != nil || *embedded, Progress: prefixed{}, FileLog: "/dev/stdout"})
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n(everything started so far has been stopped)\n", err)
		os.Exit(1)
	}
	defer st.Close()

	tokens, err := demoTokens(st)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	if *selftest {
		if failed := selfTest(st, tokens, os.Stdout); failed > 0 {
			st.Close()
			os.Exit(1)
		}
		return
	}

	fmt.Printf(`
Ready. This local gateway is a development stand-in for Kong; production runs these plugin binaries in Kong
(see "make demo-docker"). Customers: Alice (%s) owns DE subscription 1234; Bob (%s) owns DE 5678.

Paste into another terminal:

  export ALICE=%s
  export BOB=%s
  export PAY=%s
  export PAY_BOB=%s
  export PAY_EXPIRED=%s
`, stack.Alice, stack.Bob, tokens["ALICE"], tokens["BOB"], tokens["PAY"], tokens["PAY_BOB"], tokens["PAY_EXPIRED"])
	for _, s := range walkthrough() {
		expect := fmt.Sprint(s.status)
		if s.code != "" {
			expect += " " + s.code
		}
		fmt.Printf("\n  # %s (expect %s)\n  %s\n", s.title, expect, s.curl(st))
	}
	fmt.Println("\nKong's file-log (kong.yml) writes each request's log entry below, subgate's decisions under \"subgate\".")
	fmt.Println("\nCtrl-C stops everything the demo started.")
	st.Gateway.Stdout = os.Stdout

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	fmt.Println("\nstopping...")
}

// demoTokens are the JWTs and payment-access-tokens the walkthrough uses.
func demoTokens(st *stack.Stack) (map[string]string, error) {
	tokens := map[string]string{}
	for name, customer := range map[string]string{"ALICE": stack.Alice, "BOB": stack.Bob} {
		tok, err := st.Identity.Token(customer, "DE", 12*time.Hour, nil)
		if err != nil {
			return nil, err
		}
		tokens[name] = tok
	}
	for name, expired := range map[string]bool{"PAY": false, "PAY_EXPIRED": true} {
		t, err := st.Payment.Token(stack.Alice, []string{"coach"}, expired)
		if err != nil {
			return nil, err
		}
		tokens[name] = t.Token
	}
	t, err := st.Payment.Token(stack.Bob, []string{"coach"}, false)
	tokens["PAY_BOB"] = t.Token
	return tokens, err
}

// selfTest runs every walkthrough step and returns how many failed.
func selfTest(st *stack.Stack, tokens map[string]string, out io.Writer) int {
	failed := 0
	for _, s := range walkthrough() {
		if err := s.run(st, tokens); err != nil {
			fmt.Fprintln(out, "FAIL", err)
			failed++
			continue
		}
		fmt.Fprintln(out, "ok  ", s.title)
	}
	fmt.Fprintf(out, "%d passed, %d failed\n", len(walkthrough())-failed, failed)
	return failed
}

// prefixed writes progress lines as "  - ...".
type prefixed struct{}

func (prefixed) Write(p []byte) (int, error) {
	fmt.Print("  - " + string(p))
	return len(p), nil
}
