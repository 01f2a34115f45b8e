package usercontext

// The shared level of the fallback cache: the local cache (usercontext.go)
// is each plugin server's own, so behind a load balancer over N Kong nodes
// an identity 503 is covered only for the users that node saw. With
// shared_cache, every success is also written to Redis, and a 503 that
// finds no usable local copy reads it there: a user seen by any node is
// covered. The rules are the local cache's:
//
//   - written only on a success, read only on a 503 (the same lookup, once);
//   - bounded in size (max_entries per identity URL, the oldest written go
//     first) and age (each entry expires after the writing route's
//     max_stale_seconds, measured by Redis's clock; a reader serves only
//     what is younger than its own max_stale_seconds);
//   - keyed so that no credential reaches Redis: the key is an HMAC of the
//     local cache's key (SHA-256 of the identity URL and the credentials),
//     and the context is sealed (AES-256-GCM) with another key derived from
//     it, so Redis holds neither the credentials nor anyone's context in
//     clear, and a context can be read, or forged, only by whoever presents
//     the credentials it belongs to;
//   - 401 / 403 and an answer naming another user delete the credentials'
//     shared copy as they evict the local one;
//   - identity events (a route with events): the node that applies an event
//     deletes the user's shared contexts and leaves a tombstone for the
//     events window (max_stale + deadline) that refuses any write for that
//     user, so a lookup that began before the event, on a node whose
//     follower lags, cannot put an old context back; a node never serves a
//     user from the shared level while an event for the user it applied is
//     in its window (its local cache, with its exact rule, still may), nor
//     while its events are stale. A deleted or blocked user is never served
//     from it.
//
// Writes and event deletions run in the background (one goroutine per
// shared level), off the request path; a full queue drops a write (counted)
// rather than hold a request.

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/denial"
	"github.com/subgate/subgate/pkg/metrics"
	"github.com/subgate/subgate/pkg/processwide"
	"github.com/subgate/subgate/pkg/redisconn"
)

// SharedCacheConfig is where the shared level lives, declared once (see
// pkg/config); absent, the fallback cache is the plugin server's alone.
type SharedCacheConfig struct {
	Redis                redisconn.Config `json:"redis" kong:"required" doc:"The Redis that holds the shared level (the one the plugins already use will do)."`
	KeyPrefix            string           `json:"key_prefix" default:"$identity_shared_prefix" kong:"len_min=1" doc:"Prefix of the shared level's keys (no braces: the keys of one identity URL share a Cluster hash tag)."`
	MaxEntries           int              `json:"max_entries" default:"100000" kong:"between=1|10000000" doc:"Contexts kept in Redis per identity URL; past it the oldest written go first."`
	WriteIntervalSeconds int              `json:"write_interval_seconds" default:"30" kong:"between=0|86400" doc:"A node rewrites a credential's unchanged context at most this often (0: on every success); a changed context at once."`
}

// DefaultSharedPrefix is the shared level's key prefix unless configured.
var DefaultSharedPrefix = config.Define("identity_shared_prefix", "subgate:identity-cache:")

// sharedQueue bounds the writes waiting for Redis per shared level.
const sharedQueue = 4096

var (
	sharedReads = metrics.NewCounter("subgate_identity_shared_reads_total",
		"Reads of the shared fallback level, on an identity 503 with no usable local copy, by outcome: hit (served), miss, stale (older than the route's max_stale_seconds), refused (identity events), unusable (does not open or parse), error (Redis).",
		"identity_url", "outcome")
	sharedWrites = metrics.NewCounter("subgate_identity_shared_writes_total",
		"Writes to the shared fallback level by outcome: written, unchanged (skipped: written by this node within write_interval_seconds), tombstoned (refused: an identity event for the user is in its window), dropped (queue full), error (Redis); and deleted (401/403 or another user named).",
		"identity_url", "outcome")
	sharedEvents = metrics.NewCounter("subgate_identity_shared_event_deletions_total",
		"Identity events applied to the shared fallback level (the user's contexts deleted, a tombstone left), by outcome: applied, error.",
		"identity_url", "outcome")
)

// sharedLevel is one identity URL's namespace in one Redis, shared by the
// routes (and instances) of this process that name both.
type sharedLevel struct {
	rdb           redis.UniversalClient
	keys          string // key_prefix + "{" + namespace + "}:"
	ns            string
	label         string
	max           int
	writeInterval time.Duration
	window        atomic.Int64 // tombstone lifetime (ns): the longest events window of the routes attached

	queue   chan sharedOp
	mu      sync.Mutex
	pending map[string]struct{} // users whose events await the worker (deduplicated, never dropped)
	wake    chan struct{}
	busy    sync.WaitGroup // queued operations not yet done (tests: flush)
}

// sharedOp is a write (value set) or a deletion of one entry.
type sharedOp struct {
	id, userHash string
	value        []byte
	ttl          time.Duration
}

var sharedLevels processwide.Map[string, *sharedLevel]

// openShared returns the process-wide shared level for o's identity URL in
// o.SharedCache's Redis, starting its worker on first use.
func openShared(o Config) (*sharedLevel, error) {
	sc := *o.SharedCache
	config.FillZero(&sc)
	if strings.ContainsAny(sc.KeyPrefix, "{}") {
		return nil, fmt.Errorf("shared_cache.key_prefix %q: no braces (the keys' Cluster hash tag is the subgate's own)", sc.KeyPrefix)
	}
	rdb, err := redisconn.Shared(sc.Redis, "shared_cache.redis")
	if err != nil {
		return nil, err
	}
	return sharedLevels.Get(sc.Redis.Key()+"|"+sc.KeyPrefix+"|"+o.IdentityURL, func() (*sharedLevel, error) {
		return newSharedLevel(rdb, sc, o.IdentityURL), nil
	})
}

func newSharedLevel(rdb redis.UniversalClient, sc SharedCacheConfig, identityURL string) *sharedLevel {
	h := sha256.Sum256([]byte(identityURL))
	ns := hex.EncodeToString(h[:8])
	l := &sharedLevel{rdb: rdb, keys: sc.KeyPrefix + "{" + ns + "}:", ns: ns, label: metrics.URLLabel(identityURL),
		max: sc.MaxEntries, writeInterval: time.Duration(sc.WriteIntervalSeconds) * time.Second,
		queue: make(chan sharedOp, sharedQueue), pending: map[string]struct{}{}, wake: make(chan struct{}, 1)}
	go l.run()
	return l
}

// The keys of a namespace: all in one Cluster slot (the hash tag), so that
// one script can keep the index, the entries and the tombstones together.
func (l *sharedLevel) entryKey(id string) string { return l.keys + "c:" + id }
func (l *sharedLevel) indexKey() string          { return l.keys + "i" }
func (l *sharedLevel) userKey(uh string) string  { return l.keys + "u:" + uh }
func (l *sharedLevel) tombKey(uh string) string  { return l.keys + "t:" + uh }

// userHash names a user in Redis without their id.
func (l *sharedLevel) userHash(user string) string {
	h := sha256.Sum256([]byte(l.ns + "\x00" + user))
	return hex.EncodeToString(h[:16])
}

// derive makes the entry's Redis id and its sealing key from the local
// cache key (itself a SHA-256 of the identity URL and the credentials):
// independent of each other, and neither reveals the credentials.
func derive(key [32]byte) (id string, seal [32]byte) {
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte("subgate identity shared level: id"))
	id = hex.EncodeToString(m.Sum(nil))
	m = hmac.New(sha256.New, key[:])
	m.Write([]byte("subgate identity shared level: seal"))
	copy(seal[:], m.Sum(nil))
	return id, seal
}

// sealedEntry is what an entry holds, sealed.
type sealedEntry struct {
	Raw   json.RawMessage `json:"r"` // the context as the identity service answered it, compacted
	TTLMs int64           `json:"t"` // the lifetime it was written with: its age is t - PTTL
}

const sealVersion = 1

func seal(key [32]byte, aad string, e sealedEntry) ([]byte, error) {
	plain, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+gcm.NonceSize(), 1+gcm.NonceSize()+len(plain)+gcm.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, err
	}
	return gcm.Seal(out, out[1:], plain, []byte(aad)), nil
}

func unseal(key [32]byte, aad string, b []byte) (sealedEntry, error) {
	var e sealedEntry
	gcm, err := newGCM(key)
	if err != nil {
		return e, err
	}
	if len(b) < 1+gcm.NonceSize() || b[0] != sealVersion {
		return e, errors.New("not a sealed entry of this version")
	}
	plain, err := gcm.Open(nil, b[1:1+gcm.NonceSize()], b[1+gcm.NonceSize():], []byte(aad))
	if err != nil {
		return e, err
	}
	return e, json.Unmarshal(plain, &e)
}

func newGCM(key [32]byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// writeScript stores an entry unless the user's tombstone stands, then
// keeps the namespace within its bound: the index (a sorted set by Redis's
// time of writing) forgets entries past their lifetime and pops the
// oldest past max_entries, deleting them. KEYS: entry, index, user set,
// tombstone. ARGV: value, lifetime ms, max entries. Returns 1 written, 0
// refused by the tombstone.
var writeScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now, KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl)
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if over > 0 then
  local old = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #old, 2 do redis.call('DEL', old[i]) end
end
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
redis.call('SADD', KEYS[3], KEYS[1])
if redis.call('PTTL', KEYS[3]) < ttl then redis.call('PEXPIRE', KEYS[3], ttl) end
return 1
`)

// eventScript applies an identity event: the tombstone first (no write for
// the user from now on, for its lifetime), then every entry of the user
// goes. KEYS: user set, index, tombstone. ARGV: tombstone lifetime ms.
var eventScript = redis.NewScript(`
redis.call('SET', KEYS[3], '1', 'PX', ARGV[1])
local m = redis.call('SMEMBERS', KEYS[1])
for _, k in ipairs(m) do
  redis.call('DEL', k)
  redis.call('ZREM', KEYS[2], k)
end
redis.call('DEL', KEYS[1])
return #m
`)

// write queues the context fetched for key, to live ttl.
func (l *sharedLevel) write(key [32]byte, e *Context, ttl time.Duration) {
	id, sk := derive(key)
	v, err := seal(sk, l.entryKey(id), sealedEntry{Raw: e.Raw, TTLMs: ttl.Milliseconds()})
	if err != nil {
		sharedWrites.Inc(l.label, "error")
		return
	}
	l.enqueue(sharedOp{id: id, userHash: l.userHash(e.UserID), value: v, ttl: ttl})
}

// remove queues the deletion of the credentials' entry.
func (l *sharedLevel) remove(key [32]byte) {
	id, _ := derive(key)
	l.enqueue(sharedOp{id: id})
}

func (l *sharedLevel) enqueue(op sharedOp) {
	l.busy.Add(1)
	select {
	case l.queue <- op:
	default:
		l.busy.Done()
		sharedWrites.Inc(l.label, "dropped")
	}
}

// userEvent queues an identity event for user: never dropped (a set of
// users, so a replay of many events costs one entry each).
func (l *sharedLevel) userEvent(user string) {
	l.mu.Lock()
	if _, ok := l.pending[user]; !ok {
		l.pending[user] = struct{}{}
		l.busy.Add(1)
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// noteWindow makes tombstones last at least w (a route's events window).
func (l *sharedLevel) noteWindow(w time.Duration) {
	for {
		cur := l.window.Load()
		if int64(w) <= cur || l.window.CompareAndSwap(cur, int64(w)) {
			return
		}
	}
}

// run is the worker: events first (they guard what writes may do), then
// writes.
func (l *sharedLevel) run() {
	for {
		select {
		case <-l.wake:
			l.applyEvents()
		case op := <-l.queue:
			l.applyEvents()
			l.do(op)
			l.busy.Done()
		}
	}
}

func (l *sharedLevel) applyEvents() {
	l.mu.Lock()
	users := make([]string, 0, len(l.pending))
	for u := range l.pending {
		users = append(users, u)
	}
	l.pending = map[string]struct{}{}
	l.mu.Unlock()
	for _, u := range users {
		uh := l.userHash(u)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := eventScript.Run(ctx, l.rdb, []string{l.userKey(uh), l.indexKey(), l.tombKey(uh)}, max(time.Duration(l.window.Load()), time.Second).Milliseconds()).Err()
		cancel()
		if err != nil {
			sharedEvents.Inc(l.label, "error")
			slog.Warn("identity shared level: an identity event could not be applied in Redis; nodes that applied it refuse the user's shared contexts for the events window",
				slog.String("identity_url", l.label), slog.String("error", err.Error()))
		} else {
			sharedEvents.Inc(l.label, "applied")
		}
		l.busy.Done()
	}
}

func (l *sharedLevel) do(op sharedOp) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if op.value == nil {
		if err := l.rdb.Del(ctx, l.entryKey(op.id)).Err(); err != nil {
			sharedWrites.Inc(l.label, "error")
			return
		}
		sharedWrites.Inc(l.label, "deleted")
		return
	}
	n, err := writeScript.Run(ctx, l.rdb, []string{l.entryKey(op.id), l.indexKey(), l.userKey(op.userHash), l.tombKey(op.userHash)},
		op.value, op.ttl.Milliseconds(), l.max).Int()
	switch {
	case err != nil:
		sharedWrites.Inc(l.label, "error")
		slog.Warn("identity shared level: write failed", slog.String("identity_url", l.label), slog.String("error", err.Error()))
	case n == 0:
		sharedWrites.Inc(l.label, "tombstoned")
	default:
		sharedWrites.Inc(l.label, "written")
	}
}

// flush waits until every queued operation is done (tests).
func (l *sharedLevel) flush() { l.busy.Wait() }

// read returns the entry for key and its age by Redis's clock, or nil.
func (l *sharedLevel) read(ctx context.Context, key [32]byte) (*sealedEntry, time.Duration, string) {
	id, sk := derive(key)
	k := l.entryKey(id)
	var get *redis.StringCmd
	var pttl *redis.DurationCmd
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, k)
		pttl = p.PTTL(ctx, k)
		return nil
	})
	if errors.Is(err, redis.Nil) || (err == nil && get.Err() == redis.Nil) {
		return nil, 0, "miss"
	}
	if err != nil {
		return nil, 0, "error"
	}
	e, err := unseal(sk, k, []byte(get.Val()))
	left := pttl.Val()
	if err != nil || left <= 0 {
		return nil, 0, "unusable"
	}
	return &e, max(time.Duration(e.TTLMs)*time.Millisecond-left, 0), "hit"
}

// sharedFallback is the shared level's answer to a 503 that found no
// usable local copy: a context for key younger than MaxStale (by Redis's
// clock), valid by this route's rules, not refused by identity events (see
// the package comment above), naming the user want ("": any). nil when none;
// a denial when it names another user.
func (c *Client) sharedFallback(ctx context.Context, key [32]byte, want string, refused *string) (*Context, *denial.Denial) {
	l := c.shared
	ev := c.ev
	if ev != nil && ev.stale() {
		*refused = "the identity events on " + ev.stream + " are stale (fail closed)"
		sharedReads.Inc(l.label, "refused")
		return nil, nil
	}
	e, age, outcome := l.read(ctx, key)
	if e == nil {
		sharedReads.Inc(l.label, outcome)
		return nil, nil
	}
	if age > time.Duration(c.o.MaxStaleSeconds)*time.Second {
		sharedReads.Inc(l.label, "stale")
		return nil, nil
	}
	got, err := c.parse("application/json", e.Raw)
	if err != nil {
		sharedReads.Inc(l.label, "unusable")
		return nil, nil
	}
	got.StoredAt = c.o.Now().Add(-age)
	if ev != nil && ev.v.recent(got.UserID) {
		*refused = "an identity event for the user is within its window on this node (the shared level is not used for the user)"
		sharedReads.Inc(l.label, "refused")
		return nil, nil
	}
	if den := c.matches(got, want); den != nil {
		sharedReads.Inc(l.label, "refused")
		return nil, den
	}
	sharedReads.Inc(l.label, "hit")
	return got, nil
}

// sharedWrite writes a fresh context to the shared level, unless this node
// wrote the same context for these credentials within the write interval
// (prev: the local copy it replaces), or, with identity events, the events
// are stale or an event for the user was applied since the lookup began.
func (c *Client) sharedWrite(key [32]byte, got, prev *Context) {
	l := c.shared
	now := c.o.Now()
	if prev != nil && string(prev.Raw) == string(got.Raw) && !prev.sharedAt.IsZero() && now.Sub(prev.sharedAt) < l.writeInterval {
		got.sharedAt = prev.sharedAt
		sharedWrites.Inc(l.label, "unchanged")
		return
	}
	if ev := c.ev; ev != nil && (ev.f.Stale(time.Duration(c.o.Events.StaleAfterSeconds)*time.Second) || ev.v.covers(got.UserID, got.Asked)) {
		sharedWrites.Inc(l.label, "tombstoned")
		return
	}
	got.sharedAt = now
	l.write(key, got, time.Duration(c.o.MaxStaleSeconds)*time.Second)
}
