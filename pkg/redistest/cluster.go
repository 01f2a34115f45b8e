package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClusterOptions shape a Redis Cluster.
type ClusterOptions struct {
	Primaries int // default 3 (redis-cli refuses fewer)
	Replicas  int // replicas per primary; default 0, 1 for the usual 3+3
	// NodeTimeout is cluster-node-timeout: how long a node may be
	// unreachable before it is failed over (default 1 s, small for tests;
	// production clusters run 5 to 15 s).
	NodeTimeout time.Duration
	Extra       []string // further "--name value" arguments for every node
}

// Cluster is a running Redis Cluster made of redis-server processes.
type Cluster struct {
	Nodes []*Server // in creation order: the first Primaries nodes start as primaries
	o     ClusterOptions
	cli   string
}

// LaunchCluster starts the nodes under dir (one subdirectory each, holding
// its nodes.conf), joins them with `redis-cli --cluster create` (cli: the
// redis-cli binary) and waits until every slot is served and every replica
// is in sync. Persistence stays off: tests and capacity runs want speed.
func LaunchCluster(bin, cli, dir string, o ClusterOptions) (_ *Cluster, err error) {
	if o.Primaries == 0 {
		o.Primaries = 3
	}
	if o.NodeTimeout == 0 {
		o.NodeTimeout = time.Second
	}
	c := &Cluster{o: o, cli: cli}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	n := o.Primaries * (1 + o.Replicas)
	for i := 0; i < n; i++ {
		ndir := filepath.Join(dir, fmt.Sprintf("node%d", i))
		if err := os.MkdirAll(ndir, 0o700); err != nil {
			return nil, err
		}
		s, err := launchNode(bin, ndir, o)
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, s)
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Seeds()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(o.Replicas), "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.WaitHealthy(30 * time.Second); err != nil {
		return nil, err
	}
	return c, nil
}

// launchNode starts one cluster node in dir, on other ports when the ones
// picked were taken meanwhile (see Launch).
func launchNode(bin, dir string, o ClusterOptions) (*Server, error) {
	return launch(bin, dir, nil, func() ([]string, error) {
		bus, err := freeAddr()
		if err != nil {
			return nil, err
		}
		_, busPort, _ := net.SplitHostPort(bus)
		return append([]string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", busPort, // explicit: port+10000 may be past 65535 for an ephemeral port
			"--cluster-node-timeout", strconv.FormatInt(o.NodeTimeout.Milliseconds(), 10),
			// A replica may always take over, however long its link was down:
			// the tests kill primaries on purpose.
			"--cluster-replica-validity-factor", "0",
			// Only the slots of a failed primary stop answering, not all
			// 16384 (the README recommends the same for production).
			"--cluster-require-full-coverage", "no",
			// A rejoining node syncs at once, not after the default 5 s.
			"--repl-diskless-sync-delay", "0",
		}, o.Extra...), nil
	})
}

// StartCluster runs a cluster for a test and stops it when the test ends.
func StartCluster(tb testing.TB, o ClusterOptions) *Cluster {
	tb.Helper()
	bin := binary(tb)
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		tb.Fatalf("redis-cli not found (it comes with redis-server): %v", err)
	}
	c, err := LaunchCluster(bin, cli, tb.TempDir(), o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Stop)
	return c
}

// Seeds is every node's address, as a cluster client's seed list.
func (c *Cluster) Seeds() []string {
	var a []string
	for _, s := range c.Nodes {
		a = append(a, s.Addr)
	}
	return a
}

// Stop kills every node (paused ones too).
func (c *Cluster) Stop() {
	for _, s := range c.Nodes {
		s.Stop()
	}
}

// Kill sends SIGKILL to s: a crashed primary, as its peers see it.
func (c *Cluster) Kill(s *Server) { s.Stop() }

// Pause sends SIGSTOP to s: a hung node whose connections stay open and
// answer nothing.
func (c *Cluster) Pause(s *Server) error { return s.signal(syscall.SIGSTOP) }

// Resume sends SIGCONT to a paused node.
func (c *Cluster) Resume(s *Server) error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) error {
	if s.cmd == nil || s.cmd.Process == nil {
		return fmt.Errorf("redistest: %s is not running", s.Addr)
	}
	return s.cmd.Process.Signal(sig)
}

// Rejoin restarts a killed node on its address with its nodes.conf: it
// rejoins the cluster (a former primary as a replica of its successor).
func (c *Cluster) Rejoin(s *Server) error {
	s.Stop()
	return s.start()
}

func (s *Server) running() bool { return s.cmd != nil }

// node is a short-lived client of one node (control commands only).
func node(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxRetries: -1})
}

// Slot is the hash slot of key, as the cluster computes it.
func (c *Cluster) Slot(key string) (int, error) {
	for _, s := range c.live() {
		r := node(s.Addr)
		n, err := r.ClusterKeySlot(context.Background(), key).Result()
		r.Close()
		if err == nil {
			return int(n), nil
		}
	}
	return 0, errors.New("redistest: no node answers")
}

// PrimaryFor is the node serving key now, as the first live node that
// answers sees the cluster.
func (c *Cluster) PrimaryFor(key string) (*Server, error) {
	slot, err := c.Slot(key)
	if err != nil {
		return nil, err
	}
	return c.PrimaryForSlot(slot)
}

// PrimaryForSlot is the node serving slot now.
func (c *Cluster) PrimaryForSlot(slot int) (*Server, error) {
	m, err := c.slotMap()
	if err != nil {
		return nil, err
	}
	return c.byAddr(m[slot])
}

// SlotsByPrimary is the slots each primary serves now.
func (c *Cluster) SlotsByPrimary() (map[*Server][]int, error) {
	m, err := c.slotMap()
	if err != nil {
		return nil, err
	}
	out := map[*Server][]int{}
	for slot, a := range m {
		s, err := c.byAddr(a)
		if err != nil {
			return nil, fmt.Errorf("slot %d: %w", slot, err)
		}
		out[s] = append(out[s], slot)
	}
	return out, nil
}

// Primaries are the nodes that serve slots now.
func (c *Cluster) Primaries() ([]*Server, error) {
	m, err := c.slotMap()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []*Server
	for _, a := range m {
		if a != "" && !seen[a] {
			seen[a] = true
			s, err := c.byAddr(a)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// slotMap is the address serving each slot ("" for an unserved slot).
func (c *Cluster) slotMap() ([16384]string, error) {
	m, _, err := c.slots()
	return m, err
}

// slots is slotMap and the number of distinct replicas CLUSTER SLOTS lists.
func (c *Cluster) slots() (m [16384]string, replicas int, _ error) {
	var lastErr error = errors.New("redistest: no node is running")
	for _, s := range c.live() {
		r := node(s.Addr)
		//lint:ignore SA1019 go-redis' cluster client routes by CLUSTER SLOTS: the harness waits for what the client will see.
		slots, err := r.ClusterSlots(context.Background()).Result()
		r.Close()
		if err != nil {
			lastErr = err
			continue
		}
		seen := map[string]bool{}
		for _, sr := range slots {
			if len(sr.Nodes) == 0 {
				continue
			}
			for i := sr.Start; i <= sr.End; i++ {
				m[i] = sr.Nodes[0].Addr
			}
			for _, r := range sr.Nodes[1:] {
				if !seen[r.Addr] {
					seen[r.Addr] = true
					replicas++
				}
			}
		}
		return m, replicas, nil
	}
	return m, 0, lastErr
}

func (c *Cluster) byAddr(a string) (*Server, error) {
	for _, s := range c.Nodes {
		if s.Addr == a {
			return s, nil
		}
	}
	return nil, fmt.Errorf("redistest: %q is no node of this cluster", a)
}

func (c *Cluster) live() []*Server {
	var out []*Server
	for _, s := range c.Nodes {
		if s.running() {
			out = append(out, s)
		}
	}
	return out
}

// ReplicaOf is a running replica of primary p (nil without one).
func (c *Cluster) ReplicaOf(p *Server) (*Server, error) {
	id, err := c.NodeID(p)
	if err != nil {
		return nil, err
	}
	for _, s := range c.live() {
		if s == p {
			continue
		}
		r := node(s.Addr)
		nodes, err := r.ClusterNodes(context.Background()).Result()
		r.Close()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(nodes, "\n") {
			f := strings.Fields(line)
			if len(f) > 3 && strings.Contains(f[2], "myself") && strings.Contains(f[2], "slave") && f[3] == id {
				return s, nil
			}
		}
	}
	return nil, nil
}

// NodeID is s's cluster node id.
func (c *Cluster) NodeID(s *Server) (string, error) {
	r := node(s.Addr)
	defer r.Close()
	return r.Do(context.Background(), "CLUSTER", "MYID").Text()
}

// WaitHealthy waits until every running node says cluster_state:ok, every
// slot is served by a running primary, every node knows the same number of
// nodes as the running ones, and every running replica's link to its
// primary is up (so a failover that follows loses nothing acknowledged
// before the wait).
func (c *Cluster) WaitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var why error
	for time.Now().Before(deadline) {
		if why = c.healthy(); why == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("redistest: cluster not healthy within %v: %w", timeout, why)
}

// WaitPromoted waits until replica serves key's slot as a primary: the
// cluster has failed its old primary over (after cluster-node-timeout and
// an election).
func (c *Cluster) WaitPromoted(key string, replica *Server, timeout time.Duration) error {
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		if p, err := c.PrimaryFor(key); err == nil && p == replica {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: %s not promoted for %q within %v", replica.Addr, key, timeout)
		}
	}
}

func (c *Cluster) healthy() error {
	ctx := context.Background()
	live := c.live()
	addrs := map[string]bool{}
	for _, s := range live {
		addrs[s.Addr] = true
	}
	replicas := 0
	for _, s := range live {
		r := node(s.Addr)
		info, err := r.ClusterInfo(ctx).Result()
		if err != nil {
			r.Close()
			return fmt.Errorf("%s: %w", s.Addr, err)
		}
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
			r.Close()
			return fmt.Errorf("%s: cluster state not ok or slots not all ok", s.Addr)
		}
		repl, err := r.Info(ctx, "replication").Result()
		r.Close()
		if err != nil {
			return err
		}
		if strings.Contains(repl, "role:slave") {
			if !strings.Contains(repl, "master_link_status:up") {
				return fmt.Errorf("%s: replica link not up", s.Addr)
			}
			replicas++
		}
	}
	m, listed, err := c.slots()
	if err != nil {
		return err
	}
	// CLUSTER SLOTS lists a replica once its peers have heard its
	// replication offset: until then replica reads go to primaries.
	if listed != replicas {
		return fmt.Errorf("%d running replicas, %d listed in CLUSTER SLOTS", replicas, listed)
	}
	for i, a := range m {
		if !addrs[a] {
			return fmt.Errorf("slot %d served by %q, not a running node", i, a)
		}
	}
	return nil
}

// MoveSlot moves one slot and its keys from its primary to dst the way
// `redis-cli --cluster reshard` does (SETSLOT IMPORTING/MIGRATING, MIGRATE
// in batches, SETSLOT NODE), so clients meet ASK while it runs and MOVED
// after. pause runs between MIGRATE batches (nil: none), to stretch the
// window in which keys of the slot live on both nodes.
func (c *Cluster) MoveSlot(slot int, dst *Server, batch int, pause func()) error {
	ctx := context.Background()
	src, err := c.PrimaryForSlot(slot)
	if err != nil {
		return err
	}
	if src == dst {
		return nil
	}
	srcID, err := c.NodeID(src)
	if err != nil {
		return err
	}
	dstID, err := c.NodeID(dst)
	if err != nil {
		return err
	}
	rs, rd := node(src.Addr), node(dst.Addr)
	defer rs.Close()
	defer rd.Close()
	if err := rd.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID).Err(); err != nil {
		return err
	}
	if err := rs.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID).Err(); err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(dst.Addr)
	if batch <= 0 {
		batch = 100
	}
	for {
		keys, err := rs.ClusterGetKeysInSlot(ctx, slot, batch).Result()
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		if err := rs.Do(ctx, args...).Err(); err != nil {
			return fmt.Errorf("MIGRATE: %w", err)
		}
		if pause != nil {
			pause()
		}
	}
	// The destination first, then the source, then everyone: the order
	// redis-cli uses, so no moment has the slot owned by nobody.
	for _, s := range append([]*Server{dst, src}, c.live()...) {
		r := node(s.Addr)
		err := r.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err()
		r.Close()
		if err != nil && (s == dst || s == src) {
			return fmt.Errorf("SETSLOT NODE on %s: %w", s.Addr, err)
		}
	}
	return nil
}

// Reshard moves n slots from src to dst with `redis-cli --cluster reshard`.
func (c *Cluster) Reshard(src, dst *Server, n int) error {
	srcID, err := c.NodeID(src)
	if err != nil {
		return err
	}
	dstID, err := c.NodeID(dst)
	if err != nil {
		return err
	}
	out, err := exec.Command(c.cli, "--cluster", "reshard", src.Addr, "--cluster-from", srcID, "--cluster-to", dstID,
		"--cluster-slots", strconv.Itoa(n), "--cluster-yes", "--cluster-pipeline", "100").CombinedOutput()
	if err != nil {
		return fmt.Errorf("redis-cli --cluster reshard: %v\n%s", err, out)
	}
	return nil
}
