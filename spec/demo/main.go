// Command demo runs subgate on this machine without Docker: Redis, the
// plugin servers from bin/ under their supervisor (as the Docker image and
// Kubernetes run them), the demo identity and echo services, and a gateway
// on :8000 serving kong/kong.yml through the real plugin binaries: a real
// Kong when one is found (the kit's, KONG=, or on PATH; spec/realkong), the
// development stand-in for Kong (spec/gateway) otherwise, and it says which.
// It prints tokens and curl commands to try, and stops everything it
// started on Ctrl-C.
//
//	make demo                 # builds, then: go run ./spec/demo
//	go run ./spec/demo -selftest   # run every printed command and check its answer
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/subgate/subgate/spec/realkong"
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
	with := flag.String("with", "auto", "the gateway: kong (a real Kong), stand-in, or auto (Kong when one is found)")
	flag.Parse()

	_, err := exec.LookPath("redis-server")
	kong, err2 := gateway(*with)
	if err2 != nil {
		fmt.Fprintln(os.Stderr, "demo:", err2)
		os.Exit(2)
	}
	fmt.Println("subgate demo: starting")
	if kong == "" {
		fmt.Printf("  no Kong found (%s): serving through the stand-in for Kong\n", realkong.Hint)
	}
	fileLog := "/dev/stdout" // the stand-in writes it to the terminal
	if kong != "" {
		dir, err := os.MkdirTemp("", "subgate-demo-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
			os.Exit(1)
		}
		defer os.RemoveAll(dir)
		fileLog = filepath.Join(dir, "file-log.json") // Kong runs as a daemon: tailed below
	}
	st, err := stack.Start(stack.Options{BinDir: *bin, KongYML: *kongYML, SeedCSV: *seed, GatewayAddr: *gw, AdminAddr: *admin,
		IdentityAddr: *identity, PaymentAddr: *payment, EchoAddr: *echo, Miniredis: err != nil || *embedded, Progress: prefixed{},
		FileLog: fileLog, Kong: kong})
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

	what := "a development stand-in for Kong; production runs these plugin binaries in Kong (see \"make demo-docker\")"
	if kong != "" {
		what = "a real Kong (" + kong + "), DB-less on kong/kong.yml, Admin API on " + st.AdminURL
	}
	fmt.Printf(`
Ready. The gateway is %s.
Customers: Alice (%s) owns DE subscription 1234; Bob (%s) owns DE 5678.

Paste into another terminal:

  export ALICE=%s
  export BOB=%s
  export PAY=%s
  export PAY_BOB=%s
  export PAY_EXPIRED=%s
`, what, stack.Alice, stack.Bob, tokens["ALICE"], tokens["BOB"], tokens["PAY"], tokens["PAY_BOB"], tokens["PAY_EXPIRED"])
	for _, s := range walkthrough() {
		expect := fmt.Sprint(s.status)
		if s.code != "" {
			expect += " " + s.code
		}
		fmt.Printf("\n  # %s (expect %s)\n  %s\n", s.title, expect, s.curl(st))
	}
	fmt.Println("\nKong's file-log (kong.yml) writes each request's log entry below, subgate's decisions under \"subgate\".")
	fmt.Println("\nCtrl-C stops everything the demo started.")
	if st.Gateway != nil {
		st.Gateway.Stdout = os.Stdout
	} else {
		go tail(fileLog, os.Stdout)
	}

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

// gateway picks the Kong executable for -with ("": the stand-in).
func gateway(with string) (string, error) {
	switch with {
	case "stand-in":
		return "", nil
	case "kong":
		if k := realkong.Find(); k != "" {
			return k, nil
		}
		return "", errors.New(realkong.Hint)
	case "auto":
		return realkong.Find(), nil
	}
	return "", fmt.Errorf("-with %q: want kong, stand-in or auto", with)
}

// tail copies what Kong's file-log appends to path.
func tail(path string, out io.Writer) {
	var off int64
	for {
		if f, err := os.Open(path); err == nil {
			if n, err := f.Seek(off, io.SeekStart); err == nil && n == off {
				w, _ := io.Copy(out, f)
				off += w
			}
			f.Close()
		}
		time.Sleep(200 * time.Millisecond)
	}
}
