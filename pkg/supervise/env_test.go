package supervise

import (
	"slices"
	"testing"
)

func TestWorkerEnvAsNginx(t *testing.T) {
	parent := map[string]string{"TZ": "Europe/Berlin", "A": "a", "B": "b", "PATH": "/bin", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := parent[k]; return v, ok }
	got, err := WorkerEnv([]string{"A", "C=set", "MISSING", "EMPTY"}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"A=a", "C=set", "EMPTY=", "TZ=Europe/Berlin"}; !slices.Equal(got, want) {
		t.Fatalf("WorkerEnv = %q, want %q (TZ always, declared names only)", got, want)
	}
	delete(parent, "TZ")
	if got, _ := WorkerEnv(nil, lookup); len(got) != 0 {
		t.Fatalf("nothing declared and no TZ: got %q, want an empty environment", got)
	}
	if _, err := WorkerEnv([]string{"=x"}, lookup); err == nil {
		t.Fatal("an empty name was accepted")
	}
}

func TestParseMainEnvAsNginxReadsKongsLine(t *testing.T) {
	for value, want := range map[string][]string{
		"SUBGATE_X":                    {"SUBGATE_X"},
		"SUBGATE_X; env OTHER":         {"SUBGATE_X", "OTHER"},
		"SUBGATE_X;env OTHER=v; env Z": {"SUBGATE_X", "OTHER=v", "Z"},
	} {
		got, err := ParseMainEnv(value)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseMainEnv(%q) = %q, %v; want %q", value, got, err, want)
		}
	}
	// Kong writes `env <value>;`: a bare second name is an unknown directive.
	for _, bad := range []string{"SUBGATE_X; OTHER", "A B", ""} {
		if got, err := ParseMainEnv(bad); err == nil {
			t.Errorf("ParseMainEnv(%q) = %q, want nginx's refusal", bad, got)
		}
	}
}
