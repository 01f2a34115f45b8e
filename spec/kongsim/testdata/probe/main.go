// Command probe is a test-only plugin server for spec/kongsim and
// spec/gateway: it shows what a plugin server sees when Kong starts it.
// Its access handler writes a line to stdout and one to stderr, calls
// kong.log at four levels, and exits with 200 and a JSON body holding its
// environment, pid and instance __seq__. Its config can delay or fail
// StartInstance.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/server"
)

var firstStart sync.Once

// Config is the probe's plugin config.
type Config struct {
	// FailStartFile: while this file exists, decoding the config fails, so
	// go-pdk drops the connection and StartInstance fails.
	FailStartFile string `json:"fail_start_file"`
	// StartDelayMs delays the process's first StartInstance (decoding the
	// config); later starts are immediate.
	StartDelayMs int `json:"start_delay_ms"`
	// Tag is echoed in the answer (a config change is visible).
	Tag string `json:"tag"`

	seq int // Kong's __seq__, kept out of the schema
}

// UnmarshalJSON runs inside go-pdk's StartInstance.
func (c *Config) UnmarshalJSON(b []byte) error {
	type fields Config
	if err := json.Unmarshal(b, (*fields)(c)); err != nil {
		return err
	}
	var meta struct {
		Seq int `json:"__seq__"`
	}
	_ = json.Unmarshal(b, &meta)
	c.seq = meta.Seq
	firstStart.Do(func() { time.Sleep(time.Duration(c.StartDelayMs) * time.Millisecond) })
	if c.FailStartFile != "" {
		if _, err := os.Stat(c.FailStartFile); err == nil {
			return errors.New("probe: told to fail StartInstance")
		}
	}
	return nil
}

// Answer is the body the probe exits with.
type Answer struct {
	Env []string `json:"env"`
	Pid int      `json:"pid"`
	Seq int      `json:"seq"`
	Tag string   `json:"tag"`
}

// Access reports what the plugin server sees.
func (c *Config) Access(kong *pdk.PDK) {
	fmt.Printf("probe stdout seq=%d\n", c.seq)
	fmt.Fprintf(os.Stderr, "probe stderr seq=%d\n", c.seq)
	_ = kong.Log.Err("probe err ", c.seq)
	_ = kong.Log.Notice("probe notice ", c.seq)
	_ = kong.Log.Info("probe info ", c.seq)
	_ = kong.Log.Debug("probe debug ", c.seq)
	body, _ := json.Marshal(Answer{Env: os.Environ(), Pid: os.Getpid(), Seq: c.seq, Tag: c.Tag})
	kong.Response.Exit(200, body, map[string][]string{"Content-Type": {"application/json"}})
}

func main() {
	_ = server.StartServer(func() any { return &Config{} }, "0.0.1", 1000)
}
