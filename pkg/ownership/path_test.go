package ownership

import "testing"

func compile(t *testing.T, ps ...string) []Pattern {
	var out []Pattern
	for _, p := range ps {
		c, err := Compile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func TestFind(t *testing.T) {
	ps := compile(t, "/subscriptions/{subscription_id}/deliveries", "/{country}/subs/{subscription_id}")
	tests := []struct {
		path      string
		ok        bool
		unsafe    bool
		id, cntry string
	}{
		{"/subscriptions/12/deliveries", true, false, "12", ""},
		{"/subscriptions/12/deliveries/", true, false, "12", ""},
		{"/subscriptions/12/deliveries/3/items", true, false, "12", ""},
		{"/de/subs/7", true, false, "7", "de"},
		{"/subscriptions/12", false, false, "", ""},                       // too short for the first pattern
		{"/subscriptions/12/other", false, false, "", ""},                 // literal differs
		{"/Subscriptions/12/deliveries", false, false, "", ""},            // case-sensitive, as Kong's routes
		{"/subscriptions/12%2F13/deliveries", true, false, "12%2F13", ""}, // one segment: the id parser refuses it
		{"/subscriptions//12/deliveries", false, true, "", ""},
		{"/subscriptions/12/../13/deliveries", false, true, "", ""},
		{"/subscriptions/./12/deliveries", false, true, "", ""},
		{"subscriptions/12/deliveries", false, true, "", ""},
		{"/", false, true, "", ""},
		{"", false, true, "", ""},
	}
	for _, tt := range tests {
		m, ok, err := Find(ps, tt.path)
		if (err != nil) != tt.unsafe || ok != tt.ok || m.ID != tt.id || m.Country != tt.cntry {
			t.Errorf("Find(%q) = %+v ok=%v err=%v; want id=%q country=%q ok=%v unsafe=%v", tt.path, m, ok, err, tt.id, tt.cntry, tt.ok, tt.unsafe)
		}
	}
}

func TestCompileRefusesBadPatterns(t *testing.T) {
	for _, p := range []string{"", "subscriptions/{subscription_id}", "/subscriptions", "/a/{subscription_id}/{subscription_id}",
		"/{country}/{country}/{subscription_id}", "/a//{subscription_id}", "/a/../{subscription_id}", "/a/{id}/{subscription_id}", "/a%2F/{subscription_id}"} {
		if _, err := Compile(p); err == nil {
			t.Errorf("Compile(%q) accepted", p)
		}
	}
}
