//go:build unix

package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClusterOptions shape a local Redis Cluster.
type ClusterOptions struct {
	// Masters is the number of masters; the 16,384 slots are split evenly
	// between them. Default 3.
	Masters int
	// Replicas is the number of replicas of each master. Default 1.
	Replicas int
	// NodeTimeout is cluster-node-timeout: how long a master may be
	// unreachable before its replica takes over. Default 1s.
	NodeTimeout time.Duration
}

// Cluster is a Redis Cluster of redis-server processes on loopback,
// stopped when the test that started it ends.
type Cluster struct {
	// Addrs are every node's host:port, masters first: seeds for a
	// cluster client (redis.cluster_addrs).
	Addrs []string
	// Nodes are the processes, in the order of Addrs.
	Nodes []*Node
	// NodeTimeout is the cluster-node-timeout the nodes run with.
	NodeTimeout time.Duration
}

// StartCluster starts a Redis Cluster for t alone: o.Masters masters with
// o.Replicas replicas each, the slots split evenly, every replica synced,
// and cluster_state:ok on every node. Data ports are below 55,000 with the
// cluster bus port (+10,000) free too. It returns once every master answers
// a cluster client.
func StartCluster(t testing.TB, o ClusterOptions) *Cluster {
	t.Helper()
	masters := cmpOr(o.Masters, 3)
	replicas := cmpOr(o.Replicas, 1)
	timeout := cmpOr(o.NodeTimeout, time.Second)
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: %s", installHint)
	}
	g := &group{bin: bin}
	c := &Cluster{NodeTimeout: timeout}
	for range masters * (1 + replicas) {
		n := g.startNode(t, "", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.FormatInt(timeout.Milliseconds(), 10),
			// A replica may take over however long it was cut off: the
			// tests kill masters on purpose.
			"--cluster-replica-validity-factor", "0",
			"--save", "", "--appendonly", "no",
			"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0")
		c.Nodes = append(c.Nodes, n)
		c.Addrs = append(c.Addrs, n.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.form(ctx, masters, replicas); err != nil {
		t.Fatalf("redistest: cluster: %v", err)
	}
	return c
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// form assigns the slots to the first masters nodes, joins every node,
// makes the others replicas, and waits for the cluster to be whole.
func (c *Cluster) form(ctx context.Context, masters, replicas int) error {
	per := 16384 / masters
	for i := range masters {
		lo, hi := i*per, (i+1)*per-1
		if i == masters-1 {
			hi = 16383
		}
		if _, err := c.Nodes[i].do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi); err != nil {
			return fmt.Errorf("addslotsrange on %s: %w", c.Nodes[i].Addr, err)
		}
		// Distinct epochs, so that no collision round is needed.
		if _, err := c.Nodes[i].do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1); err != nil {
			return fmt.Errorf("set-config-epoch on %s: %w", c.Nodes[i].Addr, err)
		}
	}
	for _, n := range c.Nodes[1:] {
		if _, err := c.Nodes[0].do(ctx, "CLUSTER", "MEET", "127.0.0.1", n.port); err != nil {
			return fmt.Errorf("meet %s: %w", n.Addr, err)
		}
	}
	ids := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		id, err := n.do(ctx, "CLUSTER", "MYID")
		if err != nil {
			return fmt.Errorf("myid on %s: %w", n.Addr, err)
		}
		ids[i] = fmt.Sprint(id)
	}
	// Every node must know every other before a replica can name its master.
	err := waitUntil(20*time.Second, func() (bool, error) {
		for _, n := range c.Nodes {
			v, err := n.do(ctx, "CLUSTER", "NODES")
			if err != nil {
				return false, err
			}
			if got := len(readLines(fmt.Sprint(v))); got != len(c.Nodes) {
				return false, fmt.Errorf("%s knows %d of %d nodes", n.Addr, got, len(c.Nodes))
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	for r := range replicas {
		for m := range masters {
			n := c.Nodes[masters+r*masters+m]
			if _, err := n.do(ctx, "CLUSTER", "REPLICATE", ids[m]); err != nil {
				return fmt.Errorf("replicate %s of %s: %w", n.Addr, c.Nodes[m].Addr, err)
			}
		}
	}
	return c.waitHealthy(ctx, 30*time.Second)
}

// waitHealthy waits for cluster_state:ok on every live node, every live
// replica's link to its master up, and every master
// answering a cluster client.
func (c *Cluster) waitHealthy(ctx context.Context, within time.Duration) error {
	return waitUntil(within, func() (bool, error) {
		for _, n := range c.Nodes {
			if !n.Alive() {
				continue
			}
			ci, err := n.do(ctx, "CLUSTER", "INFO")
			if err != nil {
				return false, err
			}
			state := infoField(fmt.Sprint(ci), "cluster_state")
			if state != "ok" {
				return false, fmt.Errorf("%s: cluster_state:%s", n.Addr, state)
			}
			role, err := n.info(ctx, "replication", "role")
			if err != nil {
				return false, err
			}
			if role == "slave" {
				link, err := n.info(ctx, "replication", "master_link_status")
				if err != nil {
					return false, err
				}
				if link != "up" {
					return false, fmt.Errorf("replica %s: master_link_status:%s", n.Addr, link)
				}
			}
		}
		cc := c.client()
		defer cc.Close()
		err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return m.Ping(ctx).Err()
		})
		return err == nil, err
	})
}

func (c *Cluster) client() *redis.ClusterClient {
	var live []string
	for _, n := range c.Nodes {
		if n.Alive() {
			live = append(live, n.Addr)
		}
	}
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: live, DialTimeout: time.Second,
		ReadTimeout: 2 * time.Second, MaxRedirects: 8})
}

// Client returns a cluster client on every node, closed when t ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// node returns the node at addr.
func (c *Cluster) node(addr string) *Node {
	for _, n := range c.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// MasterOf returns the node that is master of key's slot, as a live node
// sees it now.
func (c *Cluster) MasterOf(t testing.TB, key string) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr, err := c.masterOf(ctx, key)
	if err != nil {
		t.Fatalf("redistest: master of %q: %v", key, err)
	}
	return c.node(addr)
}

// masterOf asks each live node in turn for key's slot and its owner.
func (c *Cluster) masterOf(ctx context.Context, key string) (string, error) {
	var last error
	for _, n := range c.Nodes {
		if !n.Alive() {
			continue
		}
		addr, err := n.slotOwner(ctx, key)
		if err == nil {
			return addr, nil
		}
		last = err
	}
	return "", fmt.Errorf("no live node answered: %v", last)
}

// slotOwner returns the master of key's slot as n sees it.
func (n *Node) slotOwner(ctx context.Context, key string) (string, error) {
	cl := n.client()
	defer cl.Close()
	slot, err := cl.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return "", err
	}
	slots, err := cl.ClusterSlots(ctx).Result()
	if err != nil {
		return "", err
	}
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
			return s.Nodes[0].Addr, nil
		}
	}
	return "", fmt.Errorf("slot %d has no master in %s's view", slot, n.Addr)
}

// KillMasterOf kills (SIGKILL) the master of key's slot and returns it.
func (c *Cluster) KillMasterOf(t testing.TB, key string) *Node {
	t.Helper()
	m := c.MasterOf(t, key)
	if m == nil {
		t.Fatalf("redistest: master of %q is not a node of this cluster", key)
	}
	m.Kill()
	return m
}

// WaitFailover waits, up to within, until a live node other than old is
// master of key's slot in every live node's view and the cluster is
// healthy again (cluster_state:ok, replicas linked). It returns the new
// master and how long it waited.
func (c *Cluster) WaitFailover(t testing.TB, key string, old *Node, within time.Duration) (*Node, time.Duration) {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), within+5*time.Second)
	defer cancel()
	var owner string
	err := waitUntil(within, func() (bool, error) {
		seen := map[string]bool{}
		for _, n := range c.Nodes {
			if !n.Alive() {
				continue
			}
			addr, err := n.slotOwner(ctx, key)
			if err != nil {
				return false, err
			}
			seen[addr] = true
			owner = addr
		}
		if len(seen) != 1 || seen[old.Addr] {
			return false, fmt.Errorf("slot owners seen: %v (old %s)", keys(seen), old.Addr)
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("redistest: failover of %s: %v", old.Addr, err)
	}
	if err := c.waitHealthy(ctx, within); err != nil {
		t.Fatalf("redistest: cluster after failover of %s: %v", old.Addr, err)
	}
	return c.node(owner), time.Since(start)
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// String names the cluster's nodes, for test logs.
func (c *Cluster) String() string { return "cluster " + strings.Join(c.Addrs, ",") }
