package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/subgate/subgate/spec/realkong"
	"github.com/subgate/subgate/spec/stack"
)

// TestWalkthroughAnswersAsPrinted runs every command the demo prints, with
// the real redis-server and with the embedded miniredis, through the
// stand-in and through a real Kong (as `make demo` picks one), and checks
// each gives the promised status and code.
func TestWalkthroughAnswersAsPrinted(t *testing.T) {
	bin := os.Getenv("SUBGATE_BIN")
	if bin == "" {
		bin = t.TempDir()
		entries, _ := os.ReadDir("../../plugins")
		for _, e := range entries {
			if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, e.Name()), "../../plugins/"+e.Name()).CombinedOutput(); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		}
	}
	modes := map[string]bool{"miniredis": true}
	if _, err := exec.LookPath("redis-server"); err == nil || os.Getenv("SUBGATE_REQUIRE_REDIS") == "1" {
		modes["redis-server"] = false
	}
	kong := realkong.Find()
	if kong == "" && os.Getenv("SUBGATE_REQUIRE_KONG") == "1" {
		t.Fatal(realkong.Hint)
	}
	for name, mini := range modes {
		for _, gw := range []string{"stand-in", "kong"} {
			t.Run(name+"/"+gw, func(t *testing.T) {
				k := ""
				if gw == "kong" {
					if k = kong; k == "" {
						t.Skip(realkong.Hint)
					}
				}
				walkthroughAnswers(t, bin, mini, k)
			})
		}
	}
}

func walkthroughAnswers(t *testing.T, bin string, mini bool, kong string) {
	{
		{
			var progress bytes.Buffer
			st, err := stack.Start(stack.Options{BinDir: bin, KongYML: "../../kong/kong.yml", SeedCSV: "../../" + stack.SeedCSV, GatewayAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
				IdentityAddr: "127.0.0.1:0", PaymentAddr: "127.0.0.1:0", EchoAddr: "127.0.0.1:0", Miniredis: mini, Progress: &progress, Kong: kong})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			tokens, err := demoTokens(st)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if failed := selfTest(st, tokens, &out); failed > 0 {
				t.Fatalf("%d steps did not answer as printed:\n%s\nprogress:\n%s", failed, out.String(), progress.String())
			}
		}
	}
}

func TestPortTakenStopsCleanly(t *testing.T) {
	bin := os.Getenv("SUBGATE_BIN")
	if bin == "" {
		t.Skip("needs SUBGATE_BIN (make test sets it)")
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free := func() string {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		defer l.Close()
		return l.Addr().String()
	}
	identity := free()
	_, err = stack.Start(stack.Options{BinDir: bin, KongYML: "../../kong/kong.yml", SeedCSV: "../../" + stack.SeedCSV, Miniredis: true,
		GatewayAddr: taken.Addr().String(), IdentityAddr: identity, EchoAddr: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "gateway") || !strings.Contains(err.Error(), "taken") {
		t.Fatalf("err = %v, want a clear error naming the gateway's taken port", err)
	}
	// What had started is stopped: the identity service no longer listens.
	if c, err := net.DialTimeout("tcp", identity, time.Second); err == nil {
		c.Close()
		t.Fatal("the identity service is still listening after the failed start")
	}
}
