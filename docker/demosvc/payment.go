package demosvc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/payevents"
	"github.com/subgate/subgate/pkg/paytoken"
)

// The payment service's issuer name and audience, as kong/kong.yml expects them.
const (
	PaymentIssuer   = "http://payment.demo"
	PaymentAudience = "subgate"
)

// Payment is the demo payment service: the only arbiter of paid access. It
// issues payment-access-tokens with pkg/paytoken (a key generated at start,
// never committed), publishes its JWKS, and publishes cancellations,
// refunds, blocks and reactivations with pkg/payevents.
type Payment struct {
	key *ecdsa.PrivateKey
	kid string
	iss *paytoken.Issuer
	pub *payevents.Publisher
}

// NewPayment uses rdb for the events stream (the default stream name).
func NewPayment(rdb redis.UniversalClient) (*Payment, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	var kid [6]byte
	_, _ = rand.Read(kid[:])
	p := &Payment{key: k, kid: "pay-" + base64.RawURLEncoding.EncodeToString(kid[:])}
	if p.iss, err = p.issuer(nil); err != nil {
		return nil, err
	}
	p.pub, err = payevents.NewPublisher(rdb, payevents.DefaultStream, paytoken.DefaultTTL+time.Minute)
	return p, err
}

func (p *Payment) issuer(now func() time.Time) (*paytoken.Issuer, error) {
	return paytoken.NewIssuer(paytoken.IssuerOptions{Key: p.key, Kid: p.kid, Issuer: PaymentIssuer, Audience: PaymentAudience, Now: now})
}

// Token issues a payment-access-token; expired issues one that expired a
// minute ago (to show payment_token_expired).
func (p *Payment) Token(customer string, entitlements []string, expired bool) (paytoken.Issued, error) {
	iss := p.iss
	if expired {
		var err error
		if iss, err = p.issuer(func() time.Time { return time.Now().Add(-paytoken.DefaultTTL - time.Minute) }); err != nil {
			return paytoken.Issued{}, err
		}
	}
	return iss.Issue(customer, entitlements)
}

// TokenIssued issues a payment-access-token as an issuer with lifetime ttl
// whose clock reads issuedAt would: a token issued before a revocation, or
// one longer-lived than the gateway's max_token_lifetime_seconds (to show
// the gateway's lifetime bound).
func (p *Payment) TokenIssued(customer string, entitlements []string, issuedAt time.Time, ttl time.Duration) (paytoken.Issued, error) {
	iss, err := paytoken.NewIssuer(paytoken.IssuerOptions{Key: p.key, Kid: p.kid, Issuer: PaymentIssuer, Audience: PaymentAudience,
		TTL: ttl, Now: func() time.Time { return issuedAt }})
	if err != nil {
		return paytoken.Issued{}, err
	}
	return iss.Issue(customer, entitlements)
}

// Publish sends a payment event now.
func (p *Payment) Publish(ctx context.Context, t payevents.Type, customer string) (string, error) {
	return p.pub.Publish(ctx, payevents.Event{Type: t, CustomerID: customer, At: time.Now()})
}

// Handler serves:
//
//	GET  /.well-known/jwks.json
//	POST /tokens {"customer_id","entitlements":["coach"],"expired":false}   a payment-access-token
//	POST /events {"type":"cancellation"|"refund"|"block"|"reactivation","customer_id"}
//
// A real payment service authenticates the caller before issuing; the demo
// trusts its input.
func (p *Payment) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(p.iss.JWKS())
	})
	mux.HandleFunc("POST /tokens", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			CustomerID   string   `json:"customer_id"`
			Entitlements []string `json:"entitlements"`
			Expired      bool     `json:"expired"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in); err != nil || in.CustomerID == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "customer_id required"})
			return
		}
		if in.Entitlements == nil {
			in.Entitlements = []string{"coach"}
		}
		t, err := p.Token(in.CustomerID, in.Entitlements, in.Expired)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"payment_token": t.Token, "expires_at": t.ExpiresAt.Format(time.RFC3339)})
	})
	mux.HandleFunc("POST /events", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Type       string `json:"type"`
			CustomerID string `json:"customer_id"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad JSON"})
			return
		}
		id, err := p.Publish(r.Context(), payevents.Type(in.Type), in.CustomerID)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"id": id})
	})
	return mux
}
