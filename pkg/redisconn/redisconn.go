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
	"os"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options are the Redis settings of a route; the JSON tags make the struct
// usable directly as a Kong config record.
type Options struct {
	// Addresses: one host:port for a single node, several for Cluster, or
	// the Sentinels' addresses when MasterName is set.
	Addresses  []string `json:"addresses"`
	MasterName string   `json:"master_name"` // Sentinel: the monitored master's name
	Username   string   `json:"username"`    // ACL user
	// PasswordEnv names the environment variable holding the password, so
	// it is not written in kong.yml.
	PasswordEnv         string `json:"password_env"`
	SentinelPasswordEnv string `json:"sentinel_password_env"`
	DB                  int    `json:"db"`
	TLS                 bool   `json:"tls"`
	TLSServerName       string `json:"tls_server_name"`
	DialTimeoutMs       int    `json:"dial_timeout_ms"`
	ReadTimeoutMs       int    `json:"read_timeout_ms"`
	PoolSize            int    `json:"pool_size"`
	MaxRetries          int    `json:"max_retries"`
}

// Defaults fills unset fields: short timeouts, because a gateway that waits
// on Redis holds a Kong worker, and one retry.
func (o *Options) Defaults() {
	if o.DialTimeoutMs <= 0 {
		o.DialTimeoutMs = 200
	}
	if o.ReadTimeoutMs <= 0 {
		o.ReadTimeoutMs = 100
	}
	if o.PoolSize <= 0 {
		o.PoolSize = 32
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 1
	}
}

// Validate reports what is wrong with o (after Defaults).
func (o *Options) Validate() error {
	if len(o.Addresses) == 0 {
		return errors.New("redis.addresses is empty")
	}
	for _, a := range o.Addresses {
		if a == "" {
			return errors.New("redis.addresses holds an empty address")
		}
	}
	if o.DB != 0 && (o.MasterName == "" && len(o.Addresses) > 1) {
		return errors.New("redis.db must be 0 with Cluster")
	}
	for _, env := range []string{o.PasswordEnv, o.SentinelPasswordEnv} {
		if env != "" && os.Getenv(env) == "" {
			return fmt.Errorf("redis: environment variable %s is unset or empty", env)
		}
	}
	if o.MaxRetries < -1 {
		return errors.New("redis.max_retries must be -1 (none) or more")
	}
	return nil
}

// Universal builds the go-redis options.
func (o Options) Universal() *redis.UniversalOptions {
	u := &redis.UniversalOptions{
		Addrs:        o.Addresses,
		MasterName:   o.MasterName,
		Username:     o.Username,
		DB:           o.DB,
		DialTimeout:  time.Duration(o.DialTimeoutMs) * time.Millisecond,
		ReadTimeout:  time.Duration(o.ReadTimeoutMs) * time.Millisecond,
		WriteTimeout: time.Duration(o.ReadTimeoutMs) * time.Millisecond,
		PoolSize:     o.PoolSize,
		MaxRetries:   o.MaxRetries,
	}
	if o.PasswordEnv != "" {
		u.Password = os.Getenv(o.PasswordEnv)
	}
	if o.SentinelPasswordEnv != "" {
		u.SentinelPassword = os.Getenv(o.SentinelPasswordEnv)
	}
	if o.TLS {
		u.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.TLSServerName}
	}
	return u
}

var (
	mu      sync.Mutex
	clients = map[string]redis.UniversalClient{}
)

// Shared validates o and returns the process-wide client for these settings.
// Callers must not Close it: other instances share it.
func Shared(o Options) (redis.UniversalClient, error) {
	o.Defaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	key := fmt.Sprintf("%+v", o) // secrets are env names here, not values
	mu.Lock()
	defer mu.Unlock()
	if c, ok := clients[key]; ok {
		return c, nil
	}
	c := redis.NewUniversalClient(o.Universal())
	clients[key] = c
	return c, nil
}
