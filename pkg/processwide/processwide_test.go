package processwide

import (
	"os"
	"testing"
)

func TestBuildsOncePerKeyAndRetriesFailures(t *testing.T) {
	var s Map[string, int]
	builds := 0
	build := func() (int, error) { builds++; return builds, nil }
	a, _ := s.Get("k", build)
	b, _ := s.Get("k", build)
	if a != 1 || b != 1 || builds != 1 {
		t.Fatalf("a=%d b=%d builds=%d", a, b, builds)
	}
	if _, err := s.Get("bad", func() (int, error) { return 0, os.ErrNotExist }); err == nil {
		t.Fatal("a failed build must report its error")
	}
	if v, _ := s.Get("bad", build); v != 2 {
		t.Fatalf("a failed build must not be kept: %d", v)
	}
}

func TestRange(t *testing.T) {
	var s Map[string, int]
	s.Range(func(string, int) { t.Fatal("an empty registry has values") })
	for i, k := range []string{"a", "b", "c"} {
		s.Get(k, func() (int, error) { return i + 1, nil })
	}
	s.Get("failed", func() (int, error) { return 9, os.ErrNotExist })
	got := map[string]int{}
	s.Range(func(k string, v int) {
		got[k] = v
		// fn may use the registry: Range does not hold its lock.
		s.Get("d", func() (int, error) { return 4, nil })
	})
	if len(got) != 3 || got["a"] != 1 || got["b"] != 2 || got["c"] != 3 {
		t.Fatalf("Range saw %v", got)
	}
	n := 0
	s.Range(func(string, int) { n++ })
	if n != 4 {
		t.Fatalf("after a Get inside Range: %d values, want 4", n)
	}
}
