// Package redisconn turns a route's Redis settings into a go-redis client:
// a single node, Sentinel (master name + sentinel addresses) or Cluster,
// through go-redis's universal client. Clients are shared per distinct
// settings within the plugin-server process: go-pdk starts a new instance on
// every config change and never closes the old one, so sharing keeps one
// connection pool per Redis instead of one per instance ever made.
package redisconn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/subgate/subgate/pkg/config"

	"github.com/redis/go-redis/v9"
)

// Config is the Redis settings of a route, declared once (see pkg/config).
type Config struct {
	Addresses            []string `json:"addresses" kong:"required,len_min=1" doc:"host:port of the node, of the Cluster seeds, or of the Sentinels when master_name is set."`
	MasterName           string   `json:"master_name" doc:"Sentinel: the monitored master's name."`
	Username             string   `json:"username" doc:"ACL user name for Redis AUTH."`
	Password             string   `json:"password" kong:"referenceable" doc:"Password, best as a vault reference such as {vault://env/SUBGATE_REDIS_PASSWORD}."`
	PasswordFile         string   `json:"password_file" doc:"File holding the password, read at instance start."`
	PasswordEnv          string   `json:"password_env" doc:"Environment variable holding the password; it must be declared in nginx_main_env."`
	SentinelPassword     string   `json:"sentinel_password" kong:"referenceable" doc:"Sentinel password (vault reference)."`
	SentinelPasswordFile string   `json:"sentinel_password_file" doc:"File holding the Sentinel password."`
	SentinelPasswordEnv  string   `json:"sentinel_password_env" doc:"Environment variable holding the Sentinel password (nginx_main_env)."`
	DB                   int      `json:"db" default:"0" kong:"between=0|15" doc:"Database number (0 with Cluster)."`
	TLS                  bool     `json:"tls" default:"false" doc:"Connect with TLS 1.2+."`
	TLSServerName        string   `json:"tls_server_name" doc:"Server name checked in the certificate."`
	DialTimeoutMs        int      `json:"dial_timeout_ms" default:"200" kong:"between=1|60000" doc:"Connect timeout: a gateway waiting on Redis holds a Kong worker."`
	ReadTimeoutMs        int      `json:"read_timeout_ms" default:"100" kong:"between=1|60000" doc:"Read and write timeout of one command."`
	PoolSize             int      `json:"pool_size" default:"32" kong:"between=1|10000" doc:"Connections per plugin-server process and Redis."`
	MaxRetries           int      `json:"max_retries" default:"1" kong:"between=-1|10" doc:"Retries of a failed command (-1: none)."`
}

// EntityChecks: one source per secret.
func (Config) EntityChecks() []config.Check {
	return []config.Check{
		config.MutuallyExclusive("password", "password_file", "password_env"),
		config.MutuallyExclusive("sentinel_password", "sentinel_password_file", "sentinel_password_env"),
	}
}

// universal validates c and builds the go-redis options, reading secrets.
func (c Config) universal(field string) (*redis.UniversalOptions, error) {
	config.FillZero(&c)
	if err := config.Validate(&c); err != nil {
		return nil, err
	}
	var errs []error
	for _, a := range c.Addresses {
		if a == "" {
			errs = append(errs, fmt.Errorf("%s.addresses holds an empty address", field))
		}
	}
	if c.DB != 0 && c.MasterName == "" && len(c.Addresses) > 1 {
		errs = append(errs, fmt.Errorf("%s.db must be 0 with Cluster", field))
	}
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
	}
	for _, s := range []struct {
		secret config.Secret
		to     *string
	}{
		{config.Secret{Field: field + ".password", Value: c.Password, File: c.PasswordFile, Env: c.PasswordEnv}, &u.Password},
		{config.Secret{Field: field + ".sentinel_password", Value: c.SentinelPassword, File: c.SentinelPasswordFile, Env: c.SentinelPasswordEnv}, &u.SentinelPassword},
	} {
		if s.secret.Set() {
			v, err := s.secret.Read()
			errs = append(errs, err)
			*s.to = v
		}
	}
	if c.TLS {
		u.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName}
	}
	return u, errors.Join(errs...)
}

// Client builds a new client (the caller owns and closes it): for a
// follower whose blocking reads must not hold request-path connections.
func (c Config) Client(field string) (redis.UniversalClient, error) {
	u, err := c.universal(field)
	if err != nil {
		return nil, err
	}
	return redis.NewUniversalClient(u), nil
}

// sharedClient is a shared client with what may be said about it in
// metrics: its addresses and master name, never its secrets.
type sharedClient struct {
	client     redis.UniversalClient
	addresses  string // comma-separated, as configured
	masterName string
}

// clients is keyed by the settings and the secrets read (see Shared).
var clients config.Shared[string, sharedClient]

// Shared validates c and returns the process-wide client for these
// settings (the secrets read now, so a rotated file makes a new client).
// Callers must not Close it: other instances share it.
func Shared(c Config, field string) (redis.UniversalClient, error) {
	u, err := c.universal(field)
	if err != nil {
		return nil, err
	}
	s, err := clients.Get(c.Key()+"|"+u.Password+"|"+u.SentinelPassword, func() (sharedClient, error) {
		return sharedClient{redis.NewUniversalClient(u), strings.Join(c.Addresses, ","), c.MasterName}, nil
	})
	return s.client, err
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
