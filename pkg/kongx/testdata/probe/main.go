// Command probe is a plugin made with kongx.NewPlugin and nothing else, for
// TestGoPDKRunsTheGenericInstance: it sets one owned header on every
// request.
package main

import (
	"context"

	"github.com/subgate/subgate/pkg/check"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/kongx"
)

type config struct {
	Header string `json:"header" default:"X-Probe" doc:"The header set."`
}

type decider struct{ header string }

func (d decider) Reads() check.Reads { return 0 }
func (d decider) Owned() []string    { return []string{d.header} }
func (d decider) Decide(context.Context, *check.Request, *check.Audit) (check.Decision, *denial.Denial) {
	return check.Decision{Upstream: map[string]string{d.header: "generic"}}, nil
}

func main() {
	kongx.NewPlugin("probe", 1, func(c config) (decider, error) { return decider{c.Header}, nil }).Serve()
}
