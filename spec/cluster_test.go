package spec

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/ownership"
	"github.com/subgate/subgate/pkg/payevents"
	"github.com/subgate/subgate/pkg/redistest"
	"github.com/subgate/subgate/spec/stack"
)

// clusterIDs are the subscriptions the fault tests ask for: DE 1..clusterIDs,
// even ids alice's, odd ones bob's, 20 hashes spread over the three shards.
const clusterIDs = 2000

// ownershipTimeout is subscription-owner's timeout_ms default, the bound
// on a request's wait for Redis (README, config table).
const ownershipTimeout = 250 * time.Millisecond

// tally is what a load phase saw.
type tally struct {
	mu       sync.Mutex
	ok       int64 // the right answer: allow or deny as the pairs say
	wrong    []string
	unavail  int64 // 503 ownership_unavailable / revocation_state_stale
	first503 time.Time
	last503  time.Time
	max503   time.Duration // slowest 503: how long a request waited for Redis
	maxAny   time.Duration
	byKey    map[string]int64 // 503s per Redis key
}

func (t *tally) String() string {
	return fmt.Sprintf("%d right, %d 503, %d wrong; slowest 503 %v, slowest request %v",
		t.ok, t.unavail, len(t.wrong), t.max503.Round(time.Millisecond), t.maxAny.Round(time.Millisecond))
}

// clusterLoad sends requests from workers until stop is closed: ownership
// checks through the four-plugin chain (/subscriptions) and through
// subgate (/sg/subscriptions), alternating, for ids whose owner is known.
// Every answer must be the right one (200 for alice's, 403 for bob's) or a
// 503 ownership_unavailable: never a false allow or a false deny.
func clusterLoad(t *testing.T, st *stack.Stack, gw string, workers int, stop <-chan struct{}) *tally {
	tok, err := st.Identity.Token(alice, "DE", time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := ownership.Layout{Prefix: ownership.DefaultPrefix}
	res := &tally{byKey: map[string]int64{}}
	var wg sync.WaitGroup
	var n atomic.Int64
	client := &http.Client{Timeout: 10 * time.Second}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := n.Add(1)
				id := 1 + (i*7919)%clusterIDs // strides over every hash
				path := fmt.Sprintf("/subscriptions/%d", id)
				if i%2 == 0 {
					path = "/sg" + path
				}
				want := 403
				if id%2 == 0 {
					want = 200
				}
				req, _ := http.NewRequest("GET", gw+path, nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				start := time.Now()
				resp, err := client.Do(req)
				took := time.Since(start)
				if err != nil {
					res.mu.Lock()
					res.wrong = append(res.wrong, fmt.Sprintf("%s: %v", path, err))
					res.mu.Unlock()
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var body struct{ Code string }
				_ = json.Unmarshal(b, &body)
				res.mu.Lock()
				res.maxAny = max(res.maxAny, took)
				switch {
				case resp.StatusCode == want:
					res.ok++
				case resp.StatusCode == 503 && body.Code == "ownership_unavailable":
					res.unavail++
					if res.first503.IsZero() {
						res.first503 = start
					}
					res.last503 = start.Add(took)
					res.max503 = max(res.max503, took)
					res.byKey[l.Key("DE", id)]++
				default:
					res.wrong = append(res.wrong, fmt.Sprintf("%s: %d %s (want %d)", path, resp.StatusCode, b, want))
				}
				res.mu.Unlock()
			}
		}()
	}
	t.Cleanup(wg.Wait)
	return res
}

// noise is how many 503s a phase may have for keys the fault does not
// touch: a request slower than timeout_ms on a loaded CI machine (the race
// detector, other packages' tests) is a 503 too. 1 % of the requests, and
// at least 5; the counts are reported either way.
func (t *tally) noise() int64 { return max(5, (t.ok+t.unavail)/100) }

// phase runs load while fault runs, then checks the tally: no wrong
// answer; it returns the tally for the phase's own checks.
func phase(t *testing.T, st *stack.Stack, gw string, fault func()) *tally {
	t.Helper()
	stop := make(chan struct{})
	res := clusterLoad(t, st, gw, 8, stop)
	time.Sleep(300 * time.Millisecond) // load before the fault
	fault()
	time.Sleep(300 * time.Millisecond) // and after it
	close(stop)
	time.Sleep(50 * time.Millisecond)
	res.mu.Lock()
	defer res.mu.Unlock()
	if len(res.wrong) > 0 {
		t.Errorf("%d wrong answers (false allow, false deny, or another error), first: %v", len(res.wrong), res.wrong[:min(5, len(res.wrong))])
	}
	if res.ok == 0 {
		t.Error("no request answered right: the load did not run")
	}
	return res
}

// Redis Cluster under faults, through the plugin binaries and the stand-in
// for Kong, with concurrent load: a primary killed, a primary hung past
// cluster-node-timeout (2 s here), slots moved while requests flow, and a
// revocation published just before its stream's primary dies.
func TestClusterFaults(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("SUBGATE_REQUIRE_REDIS") == "1" {
			t.Fatal("redis-server not installed and SUBGATE_REQUIRE_REDIS=1")
		}
		t.Skip("redis-server not installed")
	}
	st, err := stack.Start(stack.Options{BinDir: binaries(t), KongYML: "../kong/kong.yml", SeedCSV: "../" + stack.SeedCSV,
		Cluster: true, GatewayAddr: "127.0.0.1:0", IdentityAddr: "127.0.0.1:0", PaymentAddr: "127.0.0.1:0", EchoAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	c := st.Cluster
	var csv strings.Builder
	for id := 1; id <= clusterIDs; id++ {
		owner := bob
		if id%2 == 0 {
			owner = alice
		}
		fmt.Fprintf(&csv, "DE,%d,%s\n", id, owner)
	}
	if rep, err := ownership.NewStore(st.RDB, "").Import(ctx, strings.NewReader(csv.String())); err != nil || rep.Written != clusterIDs {
		t.Fatalf("seeding: %+v %v", rep, err)
	}
	l := ownership.Layout{Prefix: ownership.DefaultPrefix}
	gw := st.GatewayURL
	healthy := func() {
		t.Helper()
		if err := c.WaitHealthy(30 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// keysOn is how many of the test's hashes p serves.
	keysOn := func(p *redistest.Server) (n int) {
		for h := 0; h <= clusterIDs/ownership.BucketSize; h++ {
			if q, err := c.PrimaryFor(l.Key("DE", int64(h*ownership.BucketSize))); err == nil && q == p {
				n++
			}
		}
		return n
	}
	victim := func() *redistest.Server {
		p, err := c.PrimaryFor(l.Key("DE", 2))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("steady", func(t *testing.T) {
		res := phase(t, st, gw, func() { time.Sleep(time.Second) })
		t.Logf("steady: %v", res)
		if res.unavail > res.noise() {
			t.Errorf("%d 503s with a healthy cluster", res.unavail)
		}
	})

	// Until the replica is promoted, requests for the dead primary's slots
	// are 503; the others are answered; afterwards every request is.
	t.Run("primary killed", func(t *testing.T) {
		p := victim()
		rep, _ := c.ReplicaOf(p)
		hashes := keysOn(p)
		var killed time.Time
		res := phase(t, st, gw, func() {
			killed = time.Now()
			c.Kill(p)
			if err := c.WaitPromoted(l.Key("DE", 2), rep, 20*time.Second); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second) // the load goes on after the promotion
		})
		recovered := res.last503.Sub(killed)
		t.Logf("primary killed (%d of the test's %d hashes on it): %v; 503s on %d keys; last 503 ended %v after the kill",
			hashes, clusterIDs/ownership.BucketSize+1, res, len(res.byKey), recovered.Round(time.Millisecond))
		var elsewhere int64
		for k, n := range res.byKey {
			if q, err := c.PrimaryFor(k); err != nil || q != rep {
				elsewhere += n
			}
		}
		t.Logf("503s for keys the killed primary did not serve: %d", elsewhere)
		if elsewhere > res.noise() {
			t.Errorf("%d 503s for keys the killed primary did not serve", elsewhere)
		}
		if res.unavail == 0 {
			t.Error("no 503 while a primary was down: did the kill happen?")
		}
		if err := c.Rejoin(p); err != nil {
			t.Fatal(err)
		}
		healthy()
	})

	// A hung primary: requests for its slots wait at most the plugin's
	// timeout, then 503, until the cluster fails it over.
	t.Run("primary hung past cluster-node-timeout", func(t *testing.T) {
		p := victim()
		rep, _ := c.ReplicaOf(p)
		var paused time.Time
		res := phase(t, st, gw, func() {
			paused = time.Now()
			if err := c.Pause(p); err != nil {
				t.Fatal(err)
			}
			if err := c.WaitPromoted(l.Key("DE", 2), rep, 20*time.Second); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
		})
		t.Logf("primary hung: %v; last 503 ended %v after the pause", res, res.last503.Sub(paused).Round(time.Millisecond))
		if res.unavail == 0 {
			t.Error("no 503 while a primary hung")
		}
		// The wait is the plugin's timeout, not the hang: a request never
		// waits for cluster-node-timeout. Slack for a loaded CI machine.
		if res.max503 > ownershipTimeout+750*time.Millisecond {
			t.Errorf("a 503 took %v: not bounded by timeout_ms (%v)", res.max503, ownershipTimeout)
		}
		if err := c.Resume(p); err != nil { // comes back as the new primary's replica
			t.Fatal(err)
		}
		healthy()
	})

	// Slots move while requests flow: the keys of each slot leave one by
	// one (ASK for those already moved), then the slot changes owner (MOVED).
	t.Run("resharding", func(t *testing.T) {
		asking := func() (n int64) {
			for _, s := range c.Nodes {
				r := redisStats(t, s.Addr)
				n += r
			}
			return n
		}
		before := asking()
		var moved int
		res := phase(t, st, gw, func() {
			slotsByPrimary, err := c.SlotsByPrimary()
			if err != nil {
				t.Fatal(err)
			}
			var primaries []*redistest.Server
			for p := range slotsByPrimary {
				primaries = append(primaries, p)
			}
			sort.Slice(primaries, func(i, j int) bool { return primaries[i].Addr < primaries[j].Addr })
			// Every slot holding one of the test's hashes moves to the next primary.
			for h := 0; h <= clusterIDs/ownership.BucketSize; h++ {
				key := l.Key("DE", int64(h*ownership.BucketSize))
				slot, err := c.Slot(key)
				if err != nil {
					t.Fatal(err)
				}
				src, err := c.PrimaryForSlot(slot)
				if err != nil {
					t.Fatal(err)
				}
				var dst *redistest.Server
				for i, p := range primaries {
					if p == src {
						dst = primaries[(i+1)%len(primaries)]
					}
				}
				if err := c.MoveSlot(slot, dst, 1, func() { time.Sleep(100 * time.Millisecond) }); err != nil {
					t.Fatal(err)
				}
				moved++
			}
			// And a bulk move by redis-cli, as an operator would.
			if err := c.Reshard(primaries[0], primaries[1], 200); err != nil {
				t.Fatal(err)
			}
		})
		asks := asking() - before
		t.Logf("resharding (%d slots with the test's hashes moved key by key, 200 more by redis-cli --cluster reshard): %v; ASKING sent %d times",
			moved, res, asks)
		if res.unavail > res.noise() {
			t.Errorf("%d 503s while slots moved: MOVED and ASK are followed, nothing should fail", res.unavail)
		}
		if asks == 0 {
			t.Error("no ASK was followed: the migration window was not exercised")
		}
		healthy()
	})

	// A revocation published (and confirmed by a replica) just before its
	// stream's primary dies is applied: alice's paid requests are refused
	// (401 payment_token_revoked) or, while the follower cannot tell,
	// 503 revocation_state_stale; never let through. Bob's stay allowed or
	// 503, never revoked.
	t.Run("revocation across a failover", func(t *testing.T) {
		aliceTok, _ := st.Identity.Token(alice, "DE", time.Hour, nil)
		bobTok, _ := st.Identity.Token(bob, "DE", time.Hour, nil)
		alicePay, _ := st.Payment.Token(alice, []string{"coach"}, false)
		bobPay, _ := st.Payment.Token(bob, []string{"coach"}, false)
		ask := func(tok, pay string) (int, string) {
			req, _ := http.NewRequest("GET", gw+"/training/plan", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("X-Payment-Token", pay)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return 0, err.Error()
			}
			defer resp.Body.Close()
			var body struct{ Code string }
			_ = json.NewDecoder(resp.Body).Decode(&body)
			return resp.StatusCode, body.Code
		}
		if s, code := ask(aliceTok, alicePay.Token); s != 200 {
			t.Fatalf("alice before the revocation: %d %s", s, code)
		}
		pub, err := payevents.NewPublisher(st.RDB, payevents.DefaultStream, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if pub, err = pub.WaitForReplicas(1, time.Second); err != nil {
			t.Fatal(err)
		}
		p, err := c.PrimaryFor(payevents.DefaultStream)
		if err != nil {
			t.Fatal(err)
		}
		rep, _ := c.ReplicaOf(p)
		id, err := pub.Publish(ctx, payevents.Event{Type: payevents.Cancellation, CustomerID: alice, At: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		c.Kill(p)
		counts := map[string]int{}
		for time.Since(killed) < 6*time.Second {
			s, code := ask(aliceTok, alicePay.Token)
			counts[fmt.Sprintf("alice %d %s", s, code)]++
			if s == 200 || (s != 401 && !(s == 503 && code == "revocation_state_stale")) {
				t.Errorf("alice after her revocation: %d %s", s, code)
			}
			s, code = ask(bobTok, bobPay.Token)
			counts[fmt.Sprintf("bob %d %s", s, code)]++
			if s != 200 && !(s == 503 && code == "revocation_state_stale") {
				t.Errorf("bob: %d %s", s, code)
			}
			time.Sleep(20 * time.Millisecond)
		}
		np, _ := c.PrimaryFor(payevents.DefaultStream)
		if np != rep {
			t.Errorf("stream not failed over to the replica within 6 s")
		}
		// Nothing lost: the new primary holds the event (the first tries
		// may still meet the dead node while the client reloads its map).
		var msgs []redis.XMessage
		for try := 0; try < 50; try++ {
			if msgs, err = st.RDB.XRange(ctx, payevents.DefaultStream, id, id).Result(); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil || len(msgs) != 1 {
			t.Errorf("the confirmed event %s is not on the new primary: %v %v", id, msgs, err)
		}
		t.Logf("revocation published, then its stream's primary killed: answers in the 6 s after: %v", counts)
		if err := c.Rejoin(p); err != nil {
			t.Fatal(err)
		}
	})
}

// redisStats is how many times ASKING was run on addr.
func redisStats(t *testing.T, addr string) int64 {
	t.Helper()
	out, err := exec.Command("redis-cli", "-u", "redis://"+addr, "INFO", "commandstats").Output()
	if err != nil {
		return 0 // a killed node
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "cmdstat_asking:calls=") {
			var n int64
			fmt.Sscanf(strings.TrimPrefix(line, "cmdstat_asking:calls="), "%d", &n)
			return n
		}
	}
	return 0
}
