// Package redisconn turns a route's Redis settings into a go-redis client:
// a single node, Sentinel (master name + sentinel addresses) or Cluster
// (cluster: true + seed addresses), each chosen explicitly: go-redis's
// universal client guesses Cluster from "more than one address", which
// reads one seed as a single node. Clients are shared per distinct
// settings within the plugin-server process: go-pdk starts a new instance on
// every config change and never closes the old one, so sharing keeps one
// connection pool per Redis instead of one per instance ever made.
package redisconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/subgate/subgate/pkg/config"
	"github.com/subgate/subgate/pkg/health"
	"github.com/subgate/subgate/pkg/processwide"
	"github.com/subgate/subgate/pkg/tlsconf"

	"github.com/redis/go-redis/v9"
)

// Config is the Redis settings of a route, declared once (see pkg/config).
type Config struct {
	Addresses            []string `json:"addresses" kong:"required,len_min=1" elements:"match=$redis_address" doc:"host:port of the node, of the Cluster seeds (cluster: true), or of the Sentinels when master_name is set."`
	MasterName           string   `json:"master_name" doc:"Sentinel: the monitored master's name."`
	Cluster              bool     `json:"cluster" default:"false" doc:"Redis Cluster: the addresses are seed nodes; the client learns the slot map and follows MOVED and ASK. Not with master_name; db must be 0."`
	ReadFromReplicas     bool     `json:"read_from_replicas" default:"false" doc:"Cluster only: send request-path reads to replicas, which may answer with data older by the replication lag; event streams are always read from primaries."`
	Username             string   `json:"username" doc:"ACL user name for Redis AUTH."`
	Password             string   `json:"password" kong:"referenceable" doc:"Password, best as a vault reference such as {vault://env/SUBGATE_REDIS_PASSWORD}."`
	PasswordFile         string   `json:"password_file" doc:"File holding the password, read at instance start."`
	PasswordEnv          string   `json:"password_env" doc:"Environment variable holding the password; it must be declared in nginx_main_env."`
	SentinelPassword     string   `json:"sentinel_password" kong:"referenceable" doc:"Sentinel password (vault reference)."`
	SentinelPasswordFile string   `json:"sentinel_password_file" doc:"File holding the Sentinel password."`
	SentinelPasswordEnv  string   `json:"sentinel_password_env" doc:"Environment variable holding the Sentinel password (nginx_main_env)."`
	DB                   int      `json:"db" default:"0" kong:"between=0|15" doc:"Database number (0 with Cluster)."`
	TLS                  bool     `json:"tls" default:"false" doc:"Connect with TLS 1.2+ (to the Sentinels too, with the same settings)."`
	TLSServerName        string   `json:"tls_server_name" doc:"Server name checked in the certificate; empty: the host dialled (Cluster nodes are dialled at the addresses they announce)."`
	tlsconf.Files
	DialTimeoutMs int `json:"dial_timeout_ms" default:"200" kong:"between=1|60000" doc:"Connect timeout: a gateway waiting on Redis holds a Kong worker."`
	ReadTimeoutMs int `json:"read_timeout_ms" default:"100" kong:"between=1|60000" doc:"Read and write timeout of one command."`
	PoolSize      int `json:"pool_size" default:"32" kong:"between=1|10000" doc:"Connections per plugin-server process and Redis."`
	MaxRetries    int `json:"max_retries" default:"1" kong:"between=-1|10" doc:"Retries of a failed command (-1: none)."`
}

// Address is the pattern of a Redis address: host:port (a host without a
// port would only fail as an outage, 503 on every request).
var Address = config.Pattern("redis_address", "^[^%s/]+:%d+$", "expected host:port")

// EntityChecks, in Kong's schema so that Kong refuses the settings at
// load: one source per secret; Cluster excludes master_name and a db other
// than 0; read_from_replicas needs Cluster.
func (Config) EntityChecks() []config.Check {
	return []config.Check{
		config.MutuallyExclusive("password", "password_file", "password_env"),
		config.MutuallyExclusive("sentinel_password", "sentinel_password_file", "sentinel_password_env"),
		config.Conditional("cluster", config.Match{Eq: true}, "master_name", config.Match{LenMax: config.N(0)},
			"cluster and master_name exclude each other (Cluster seeds or Sentinels)"),
		config.Conditional("cluster", config.Match{Eq: true}, "db", config.Match{Eq: 0}, "Redis Cluster has database 0 only"),
		config.Conditional("read_from_replicas", config.Match{Eq: true}, "cluster", config.Match{Eq: true}, "read_from_replicas needs cluster: true"),
		config.MutuallyRequired("tls_cert_file", "tls_key_file"),
	}
}

// Check is what Kong's schema cannot say: several addresses need a mode,
// never guessed (cluster: true, or master_name for Sentinels); a port is
// 1-65535; a secret has one source (Kong skips that check for a vault
// reference).
func (c Config) Check() error {
	var errs []error
	for i, a := range c.Addresses {
		if _, port, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("addresses[%d]: %q: %v", i+1, a, err))
		} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			errs = append(errs, fmt.Errorf("addresses[%d]: %q: the port is not 1-65535", i+1, a))
		}
	}
	if !c.Cluster && c.MasterName == "" && len(c.Addresses) > 1 {
		errs = append(errs, fmt.Errorf("addresses holds %d addresses: set cluster: true for Cluster seeds or master_name for Sentinels", len(c.Addresses)))
	}
	for _, s := range c.secrets("") {
		errs = append(errs, s.secret.SourcesIfSet())
	}
	return errors.Join(errs...)
}

type secretField struct {
	secret config.Secret
	to     func(*redis.UniversalOptions) *string
}

func (c Config) secrets(field string) []secretField {
	return []secretField{
		{config.Secret{Field: field + "password", Value: c.Password, File: c.PasswordFile, Env: c.PasswordEnv},
			func(u *redis.UniversalOptions) *string { return &u.Password }},
		{config.Secret{Field: field + "sentinel_password", Value: c.SentinelPassword, File: c.SentinelPasswordFile, Env: c.SentinelPasswordEnv},
			func(u *redis.UniversalOptions) *string { return &u.SentinelPassword }},
	}
}

// universal validates c and builds the go-redis options, reading secrets
// and TLS files; tlsDigest identifies the TLS files' contents.
func (c Config) universal(field string) (_ *redis.UniversalOptions, tlsDigest string, _ error) {
	config.FillZero(&c)
	if err := config.Validate(&c); err != nil {
		return nil, "", err
	}
	var errs []error
	u := &redis.UniversalOptions{
		Addrs:        c.Addresses,
		MasterName:   c.MasterName,
		Username:     c.Username,
		DB:           c.DB,
		DialTimeout:  time.Duration(c.DialTimeoutMs) * time.Millisecond,
		ReadTimeout:  time.Duration(c.ReadTimeoutMs) * time.Millisecond,
		WriteTimeout: time.Duration(c.ReadTimeoutMs) * time.Millisecond,
		PoolSize:     c.PoolSize,
		MaxRetries:   c.MaxRetries,
		// Followed within one command: MOVED after a reshard or failover, ASK
		// during a migration; more would only mean a slot map in flux.
		MaxRedirects: 3,
	}
	for _, s := range c.secrets(field + ".") {
		if s.secret.Set() {
			v, err := s.secret.Read()
			errs = append(errs, err)
			*s.to(u) = v
		}
	}
	switch {
	case c.TLS:
		l, err := c.Files.Load(field+".", c.TLSServerName)
		errs = append(errs, err)
		u.TLSConfig, tlsDigest = l.Config, l.Digest
		if u.TLSConfig == nil {
			u.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName}
		}
	case c.Files.Set() || c.TLSServerName != "":
		errs = append(errs, fmt.Errorf("%s: tls_server_name, tls_ca_file, tls_cert_file and tls_key_file need tls: true", field))
	}
	return u, tlsDigest, errors.Join(errs...)
}

// Client builds a new client (the caller owns and closes it): for a
// follower whose blocking reads must not hold request-path connections,
// and for writers. It reads primaries only, whatever read_from_replicas
// says: a stream follower that read a replica could miss an event the
// primary acknowledged and then lost in a failover, or see it late.
func (c Config) Client(field string) (redis.UniversalClient, error) {
	u, _, err := c.universal(field)
	if err != nil {
		return nil, err
	}
	return c.build(u, false), nil
}

// build makes the client the settings name. Cluster clients get a hook
// that reloads the slot map on a failed command (see reloadOnFailure).
func (c Config) build(u *redis.UniversalOptions, replicas bool) redis.UniversalClient {
	switch {
	case c.Cluster:
		o := u.Cluster()
		// A slice of its own with no spare capacity: go-redis appends
		// nodes it learns to its options' Addrs under its own lock only,
		// so two clients made from one settings' slice raced on its
		// backing array (seen under -race across a failover).
		o.Addrs = slices.Clip(slices.Clone(o.Addrs))
		o.ReadOnly = replicas
		cc := redis.NewClusterClient(o)
		cc.AddHook(reloadOnFailure{cc})
		return cc
	case c.MasterName != "":
		return redis.NewFailoverClient(u.Failover())
	default:
		return redis.NewClient(u.Simple())
	}
}

// reloadOnFailure asks a cluster client to reload its slot map when a
// command fails for any reason but a plain Redis answer. go-redis reloads
// on MOVED, and otherwise only every ClusterStateReloadInterval (60 s):
// after a primary dies and its replica is promoted, the dead node refuses
// connections and never answers MOVED, so without this every request for
// its slots would fail (503) for up to a minute after the cluster had
// recovered. The reload is lazy and coalesced (one at a time, 200 ms apart),
// so a burst of failures costs one CLUSTER SLOTS.
type reloadOnFailure struct{ c *redis.ClusterClient }

func (h reloadOnFailure) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnFailure) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(err)
		return err
	}
}

func (h reloadOnFailure) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(err)
		return err
	}
}

func (h reloadOnFailure) check(err error) {
	var reply redis.Error
	if err == nil || errors.Is(err, redis.Nil) {
		return
	}
	// A connection error, a timeout (a hung node), a cancelled context, or
	// CLUSTERDOWN / TRYAGAIN while the cluster fails over.
	if !errors.As(err, &reply) || redis.HasErrorPrefix(err, "CLUSTERDOWN") || redis.HasErrorPrefix(err, "TRYAGAIN") {
		h.c.ReloadState(context.Background())
	}
}

// sharedClient is a shared client with what may be said about it in
// metrics: its addresses and master name, never its secrets.
type sharedClient struct {
	client     redis.UniversalClient
	addresses  string // comma-separated, as configured
	masterName string
}

// clients is keyed by the settings and the secrets read (see Shared).
var clients processwide.Map[string, sharedClient]

// Shared validates c and returns the process-wide client for these
// settings (the secrets and TLS files read now, so a rotated file makes a
// new client). Callers must not Close it: other instances share it.
func Shared(c Config, field string) (redis.UniversalClient, error) {
	u, tlsDigest, err := c.universal(field)
	if err != nil {
		return nil, err
	}
	s, err := clients.Get(c.Key()+"|"+u.Password+"|"+u.SentinelPassword+"|"+tlsDigest, func() (sharedClient, error) {
		s := sharedClient{c.build(u, c.ReadFromReplicas), strings.Join(c.Addresses, ","), c.MasterName}
		health.Register(c.healthName(), func(ctx context.Context) error { return ping(ctx, s.client) })
		return s, nil
	})
	return s.client, err
}

// healthName names a Redis in readiness reports: what identifies it,
// without secrets. A client made anew for the same name (a rotated
// password, new timeouts) takes over the old one's check.
func (c Config) healthName() string {
	n := "redis " + strings.Join(c.Addresses, ",")
	if c.MasterName != "" {
		n += " master " + c.MasterName
	}
	if c.Cluster {
		n += " (cluster)"
	}
	if c.DB != 0 {
		n += fmt.Sprintf(" db %d", c.DB)
	}
	if c.Username != "" {
		n += " user " + c.Username
	}
	return n
}

// ping is a readiness check: PING answered (by every primary of a Cluster).
func ping(ctx context.Context, c redis.UniversalClient) error {
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			if err := n.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("%s: %w", n.Options().Addr, err)
			}
			return nil
		})
	}
	return c.Ping(ctx).Err()
}

// Each calls fn for every client Shared has made in this process, with its
// comma-separated addresses and its master name ("" without Sentinel):
// what identifies a Redis without its secrets. Several clients may share
// both (other settings, other DB, a rotated password).
func Each(fn func(addresses, masterName string, c redis.UniversalClient)) {
	clients.Range(func(_ string, s sharedClient) { fn(s.addresses, s.masterName, s.client) })
}

// Key identifies the settings, for sharing values built on them.
func (c Config) Key() string { return fmt.Sprintf("%+v", c) }
