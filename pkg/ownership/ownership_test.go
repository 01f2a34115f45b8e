package ownership

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

const (
	alice = "7d3e2a10-1c4b-4a5e-9f00-3c2b1a000001"
	bob   = "7d3e2a10-1c4b-4a5e-9f00-3c2b1a000002"
)

func mustUUID(t testing.TB, s string) UUID {
	u, err := ParseUUID(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func newMini(t *testing.T) (*miniredis.Miniredis, *Store) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return m, NewStore(rdb, "")
}

func TestLayout(t *testing.T) {
	l := Layout{Prefix: DefaultPrefix}
	if got := l.Key("DE", 12345); got != "subgate:own:v1:DE:123" {
		t.Fatalf("key %q", got)
	}
	if got := l.Field(12345); got != "45" {
		t.Fatalf("field %q", got)
	}
	if l.Key("DE", 99) != l.Key("DE", 1) || l.Key("DE", 100) == l.Key("DE", 99) {
		t.Fatal("bucketing is not by id/100")
	}
	if l.Key("DE", 5) == l.Key("FR", 5) {
		t.Fatal("country not in the key")
	}
}

func TestParseID(t *testing.T) {
	good := map[string]int64{"1": 1, "42": 42, "9223372036854775807": 1<<63 - 1}
	for s, want := range good {
		if got, err := ParseID(s); err != nil || got != want {
			t.Errorf("ParseID(%q) = %d, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "0", "007", "+7", "-7", " 7", "7 ", "7.0", "1e3", "0x10", "٧", "７", "9223372036854775808", "99999999999999999999", "12a", "%37"} {
		if _, err := ParseID(s); err == nil {
			t.Errorf("ParseID(%q) accepted", s)
		}
	}
}

func TestCountryAndUUID(t *testing.T) {
	if c, err := Country("de"); err != nil || c != "DE" {
		t.Fatalf("Country(de) = %q %v", c, err)
	}
	for _, s := range []string{"", "D", "DEU", "D1", "É1", "d-"} {
		if _, err := Country(s); err == nil {
			t.Errorf("Country(%q) accepted", s)
		}
	}
	u := mustUUID(t, strings.ToUpper(alice))
	if u.String() != alice {
		t.Fatalf("round trip %s", u)
	}
	for _, s := range []string{"", alice[:35], alice + "0", "{" + alice[1:35] + "}", strings.ReplaceAll(alice, "-", ""), "zd3e2a10-1c4b-4a5e-9f00-3c2b1a000001"} {
		if _, err := ParseUUID(s); err == nil {
			t.Errorf("ParseUUID(%q) accepted", s)
		}
	}
}

func TestPutLookupOwnsDelete(t *testing.T) {
	m, s := newMini(t)
	ctx := context.Background()
	if err := s.Put(ctx, "DE", 1234, mustUUID(t, alice)); err != nil {
		t.Fatal(err)
	}
	if raw := m.HGet("subgate:own:v1:DE:12", "34"); len(raw) != 16 {
		t.Fatalf("stored value has %d bytes, want 16 raw bytes", len(raw))
	}
	owner, found, err := s.Lookup(ctx, "DE", 1234)
	if err != nil || !found || owner.String() != alice {
		t.Fatalf("lookup %s %v %v", owner, found, err)
	}
	for _, tc := range []struct {
		country  string
		id       int64
		customer string
		want     bool
	}{{"DE", 1234, alice, true}, {"DE", 1234, bob, false}, {"FR", 1234, alice, false}, {"DE", 1235, alice, false}} {
		got, err := s.Owns(ctx, tc.country, tc.id, mustUUID(t, tc.customer))
		if err != nil || got != tc.want {
			t.Errorf("Owns(%s,%d,%s) = %v %v", tc.country, tc.id, tc.customer, got, err)
		}
	}
	if err := s.Delete(ctx, "DE", 1234); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Owns(ctx, "DE", 1234, mustUUID(t, alice)); ok {
		t.Fatal("deleted pair still owned")
	}
}

func TestCorruptValueIsAnErrorNotAnOwner(t *testing.T) {
	m, s := newMini(t)
	m.HSet("subgate:own:v1:DE:0", "7", "short")
	if ok, err := s.Owns(context.Background(), "DE", 7, mustUUID(t, alice)); ok || err == nil {
		t.Fatalf("corrupt value: owns=%v err=%v", ok, err)
	}
}

func TestRedisDownIsAnError(t *testing.T) {
	m, s := newMini(t)
	m.Close()
	if _, err := s.Owns(context.Background(), "DE", 7, mustUUID(t, alice)); err == nil {
		t.Fatal("no error with Redis down")
	}
}

func TestImport(t *testing.T) {
	_, s := newMini(t)
	csv := strings.Join([]string{
		"country,subscription_id,customer_uuid",
		"de,1," + alice,
		"FR,2," + bob,
		"DE,007," + alice, // leading zero
		"XX1,3," + alice,  // bad country
		"DE,4,not-a-uuid", // bad uuid
		"DE,5",            // too few fields
		`"DE,6,` + alice,  // broken quoting
	}, "\n") + "\n"
	rep, err := s.Import(context.Background(), strings.NewReader(csv))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Written != 2 {
		t.Fatalf("written %d, want 2 (%+v)", rep.Written, rep)
	}
	wantLines := []int{4, 5, 6, 7, 8}
	if len(rep.Rejected) != len(wantLines) {
		t.Fatalf("rejected %+v", rep.Rejected)
	}
	for i, r := range rep.Rejected {
		if r.Line != wantLines[i] || r.Reason == "" {
			t.Errorf("rejection %d = %+v, want line %d", i, r, wantLines[i])
		}
	}
	if ok, _ := s.Owns(context.Background(), "DE", 1, mustUUID(t, alice)); !ok {
		t.Fatal("imported pair not owned")
	}
	if ok, _ := s.Owns(context.Background(), "FR", 2, mustUUID(t, bob)); !ok {
		t.Fatal("imported pair not owned")
	}
}

func TestImportManyBatches(t *testing.T) {
	_, s := newMini(t)
	var b strings.Builder
	for i := 1; i <= ImportBatch*2+5; i++ {
		b.WriteString("DE,")
		b.WriteString(strconv.Itoa(i))
		b.WriteString("," + alice + "\n")
	}
	rep, err := s.Import(context.Background(), strings.NewReader(b.String()))
	if err != nil || rep.Written != ImportBatch*2+5 || len(rep.Rejected) != 0 {
		t.Fatalf("%+v %v", rep, err)
	}
}
