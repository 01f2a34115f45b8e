package kongx

// Telling Kong who the caller is (kong.client.authenticate), as a decision's
// check.Authenticate says, and letting CORS preflights through where a
// route opted out of checking them.

import (
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"

	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/client"
	"github.com/Kong/go-pdk/entities"
	lru "github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/subgate/subgate/pkg/check"
	"github.com/subgate/subgate/pkg/claims"
	"github.com/subgate/subgate/pkg/denial"
)

// maxConsumers bounds an instance's cache of consumers Kong found.
const maxConsumers = 10000

// consumers is an instance's cache of the consumers Kong found, made at
// the first lookup with the route's cache age (the same on every decision
// of one instance). A consumer Kong does not have is never cached: one
// created in Kong is used at its first request.
type consumers struct {
	once  sync.Once
	cache *lru.LRU[string, entities.Consumer]
}

// kongUUID is what kong.client.load_consumer takes as an id
// (kong/tools/uuid.lua is_valid_uuid, case-insensitive); anything else by
// id makes Kong raise an error, which fails the request with 500.
var kongUUID = regexp.MustCompile(`^(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// lookup finds the consumer a names (one PDK call, kong.client.load_consumer,
// unless cached), nil when Kong has none. Kong's pb_rpc drops
// load_consumer's error (it wraps only the first return value), so a
// datastore failure reads as no consumer, answered as a.Missing says. By
// username Kong first tries the value as an id: a consumer found that way
// whose username is not the value is someone else, and counts as none.
func (c *consumers) lookup(kong *pdk.PDK, a *check.Authenticate) (*entities.Consumer, error) {
	key := "username:" + a.Consumer
	if a.ByID {
		key = "id:" + strings.ToLower(a.Consumer)
		if !kongUUID.MatchString(a.Consumer) {
			return nil, nil
		}
	}
	c.once.Do(func() {
		if a.CacheFor > 0 {
			c.cache = lru.NewLRU[string, entities.Consumer](maxConsumers, nil, a.CacheFor)
		}
	})
	if c.cache != nil {
		if found, ok := c.cache.Get(key); ok {
			return &found, nil
		}
	}
	found, err := kong.Client.LoadConsumer(a.Consumer, !a.ByID)
	if err != nil {
		return nil, err
	}
	if found.Id == "" || (a.ByID && !strings.EqualFold(found.Id, a.Consumer)) || (!a.ByID && found.Username != a.Consumer) {
		return nil, nil
	}
	if c.cache != nil {
		c.cache.Add(key, found)
	}
	return &found, nil
}

// authenticate tells Kong who the caller is (one PDK call, plus the
// consumer's lookup when not cached) and puts Kong's consumer headers in
// up: the consumer's id, username and custom_id, the credential's id;
// those absent are removed (the decider owns them). A consumer Kong does
// not have is a.Missing's denial, or, without one, the credential alone.
func (i *Instance[C, D]) authenticate(kong *pdk.PDK, a *check.Authenticate, up map[string]string, audit *check.Audit) *denial.Denial {
	var consumer *entities.Consumer
	if a.Consumer != "" {
		found, err := i.consumers.lookup(kong, a)
		if err != nil {
			return denial.New(denial.InternalError, "could not look up the consumer").WithCause(err.Error())
		}
		if found == nil && a.Missing != nil {
			d := *a.Missing
			by := "username"
			if a.ByID {
				by = "id"
			}
			return d.WithCause(fmt.Sprintf("Kong has no consumer with %s %q", by, a.Consumer))
		}
		consumer = found
	}
	var cred *client.AuthenticatedCredential
	if a.Credential != "" {
		cred = &client.AuthenticatedCredential{Id: a.Credential}
		if consumer != nil {
			cred.ConsumerId = consumer.Id
		}
	}
	if consumer == nil && cred == nil {
		return nil // nothing to tell Kong: the decider refused such a config
	}
	if err := kong.Client.Authenticate(consumer, cred); err != nil {
		return denial.New(denial.InternalError, "could not authenticate the caller to Kong").WithCause(err.Error())
	}
	set := func(h, v string) { up[http.CanonicalHeaderKey(h)] = v }
	if consumer != nil {
		set("X-Consumer-Id", consumer.Id)
		set("X-Consumer-Username", consumer.Username)
		set("X-Consumer-Custom-Id", consumer.CustomId)
		audit.Add(slog.String("consumer_id", consumer.Id))
	}
	if cred != nil {
		set("X-Credential-Identifier", cred.Id)
	}
	return nil
}

// preflightMarker is what jwt-claims leaves in kong.ctx.shared, under the
// claims' key, for a CORS preflight it let through unchecked: the plugins
// after it then let it through too (only a plugin can write there). It
// never decodes as claims.
const preflightMarker = "preflight"

// isPreflight reports whether the request is a CORS preflight (Fetch
// standard: OPTIONS with Origin and Access-Control-Request-Method). The
// method costs a PDK call, made only when the headers carry both: Kong's
// own run_on_preflight skips every OPTIONS request; this is narrower.
func isPreflight(kong *pdk.PDK, h map[string][]string) (bool, error) {
	if len(h["origin"]) == 0 || len(h["access-control-request-method"]) == 0 {
		return false, nil
	}
	m, err := kong.Request.GetMethod()
	return m == http.MethodOptions, err
}

// passPreflight stores the marker for the plugins after this one (one PDK
// call).
func passPreflight(kong *pdk.PDK) error {
	return kong.Ctx.SetShared(claims.SharedKey, preflightMarker)
}
