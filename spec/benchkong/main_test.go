package main

import (
	"os"
	"testing"
	"time"

	"github.com/subgate/subgate/spec/realkong"
)

// The CPU of a process from /proc grows as it works.
func TestCPUReadsProcStat(t *testing.T) {
	self := []int{os.Getpid()}
	before := cpu(self)
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	if after := cpu(self); after-before < 20_000 {
		t.Fatalf("50 ms of spinning read as %.0f µs of CPU", after-before)
	}
	if cpu([]int{1 << 30}) != 0 {
		t.Fatal("a process that does not exist has CPU")
	}
}

// A ratio is taken within each round, then the median over the rounds:
// a round that is slow for both shapes does not move it.
func TestRatiosWithinRounds(t *testing.T) {
	b := &bench{}
	for round, v := range [][2]time.Duration{{2, 1}, {20, 10}, {3, 1}} { // subgate, floor p50 per round
		b.results = append(b.results, result{shape: "subgate", workers: 1, conc: 1, round: round, p50: v[0]},
			result{shape: "floor", workers: 1, conc: 1, round: round, p50: v[1]})
	}
	got, ok := b.ratio(ratio{num: "subgate", den: "floor", m: p50}, 1, 1)
	if !ok || got != 2 {
		t.Fatalf("ratio %v %v, want the median of 2, 2, 3: 2", got, ok)
	}
	if m := b.medianOf("floor", 1, 1, p50.of); m != 1 {
		t.Fatalf("median of 1, 10, 1 = %v", m)
	}
	if _, ok := b.ratio(ratio{num: "subgate", den: "chain", m: p50}, 1, 1); ok {
		t.Fatal("a ratio with an unmeasured shape")
	}
}

// The floor is held to subgate through a real Kong before anything is
// measured (floorMatchesSubgate): run here, `make test` catches a subgate
// change the floor no longer matches, instead of the next bench-kong run.
func TestFloorMatchesSubgate(t *testing.T) {
	kong := realkong.Require(t)
	bin := os.Getenv("SUBGATE_BIN")
	if bin == "" {
		t.Skip("set SUBGATE_BIN to the built plugins (make test does)")
	}
	err := run(options{bin: bin, repo: "../..", kong: kong, shapes: "floor,subgate", conc: "1", workers: "1", rounds: 0})
	if err != nil {
		t.Fatal(err)
	}
}
