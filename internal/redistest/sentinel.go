//go:build unix

package redistest

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMasterName is the master name the Sentinel setup monitors.
const SentinelMasterName = "agentq-test"

// SentinelOptions shape a Sentinel setup.
type SentinelOptions struct {
	// DownAfter is down-after-milliseconds: how long the master may not
	// answer before a sentinel deems it down. Default 1s.
	DownAfter time.Duration
}

// Sentinel is a master, one replica and three sentinels (quorum 2) on
// loopback, stopped when the test that started it ends.
type Sentinel struct {
	// MasterName is the monitored master's name (SentinelMasterName).
	MasterName string
	// Addrs are the sentinels' host:port.
	Addrs []string
	// URL is a redis-sentinel:// URL of the three sentinels, DB 0.
	URL string
	// Data are the two redis-servers, the first master at the start.
	Data []*Node
	// Sentinels are the three sentinel processes.
	Sentinels []*Node
}

// StartSentinel starts a Sentinel setup for t alone and returns once the
// replica is synced and every sentinel knows the replica and the two other
// sentinels, so that a failover can happen.
func StartSentinel(t testing.TB, o SentinelOptions) *Sentinel {
	t.Helper()
	downAfter := cmpOr(o.DownAfter, time.Second)
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: %s", installHint)
	}
	g := &group{bin: bin}
	data := []string{"--save", "", "--appendonly", "no", "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"}
	master := g.startNode(t, "", data...)
	_, mport, _ := net.SplitHostPort(master.Addr)
	replica := g.startNode(t, "", append(data, "--replicaof", "127.0.0.1", mport)...)
	s := &Sentinel{MasterName: SentinelMasterName, Data: []*Node{master, replica}}
	conf := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %s 2\n"+
		"sentinel down-after-milliseconds %[1]s %[3]d\n"+
		"sentinel failover-timeout %[1]s 10000\n"+
		"sentinel parallel-syncs %[1]s 1\n", SentinelMasterName, mport, downAfter.Milliseconds())
	for range 3 {
		n := g.startNode(t, conf, "--sentinel")
		s.Sentinels = append(s.Sentinels, n)
		s.Addrs = append(s.Addrs, n.Addr)
	}
	s.URL = "redis-sentinel://" + strings.Join(s.Addrs, ",") + "/0?master=" + SentinelMasterName
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = waitUntil(30*time.Second, func() (bool, error) {
		link, err := replica.info(ctx, "replication", "master_link_status")
		if err != nil || link != "up" {
			return false, fmt.Errorf("replica link %q: %v", link, err)
		}
		for _, n := range s.Sentinels {
			m, err := sentinelMaster(ctx, n)
			if err != nil {
				return false, err
			}
			if m["num-slaves"] != "1" || m["num-other-sentinels"] != "2" || m["flags"] != "master" {
				return false, fmt.Errorf("sentinel %s sees master %v", n.Addr, m)
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("redistest: sentinel setup: %v", err)
	}
	return s
}

// sentinelMaster returns SENTINEL MASTER's fields as n sees them.
func sentinelMaster(ctx context.Context, n *Node) (map[string]string, error) {
	sc := redis.NewSentinelClient(&redis.Options{Addr: n.Addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	defer sc.Close()
	return sc.Master(ctx, SentinelMasterName).Result()
}

// Master returns the data node the sentinels name as master now (asking
// each live sentinel until one answers); nil when the named address is
// none of Data.
func (s *Sentinel) Master(t testing.TB) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr, err := s.masterAddr(ctx)
	if err != nil {
		t.Fatalf("redistest: sentinel master: %v", err)
	}
	return s.data(addr)
}

func (s *Sentinel) data(addr string) *Node {
	for _, n := range s.Data {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

func (s *Sentinel) masterAddr(ctx context.Context) (string, error) {
	var last error
	for _, n := range s.Sentinels {
		if !n.Alive() {
			continue
		}
		sc := redis.NewSentinelClient(&redis.Options{Addr: n.Addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
		hp, err := sc.GetMasterAddrByName(ctx, s.MasterName).Result()
		_ = sc.Close()
		if err == nil && len(hp) == 2 {
			return net.JoinHostPort(hp[0], hp[1]), nil
		}
		last = err
	}
	return "", fmt.Errorf("no sentinel answered: %v", last)
}

// KillMaster kills (SIGKILL) the current master and returns it.
func (s *Sentinel) KillMaster(t testing.TB) *Node {
	t.Helper()
	m := s.Master(t)
	if m == nil {
		t.Fatal("redistest: the sentinels' master is not a node of this setup")
	}
	m.Kill()
	return m
}

// WaitFailover waits, up to within, until every sentinel names a master
// other than old and that master answers as a master. It returns the new
// master and how long it waited.
func (s *Sentinel) WaitFailover(t testing.TB, old *Node, within time.Duration) (*Node, time.Duration) {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), within+5*time.Second)
	defer cancel()
	var now *Node
	err := waitUntil(within, func() (bool, error) {
		for _, n := range s.Sentinels {
			m, err := sentinelMaster(ctx, n)
			if err != nil {
				return false, err
			}
			addr := net.JoinHostPort(m["ip"], m["port"])
			if addr == old.Addr {
				return false, fmt.Errorf("sentinel %s still names %s", n.Addr, addr)
			}
			now = s.data(addr)
		}
		if now == nil {
			return false, fmt.Errorf("the sentinels name no node of this setup")
		}
		role, err := now.info(ctx, "replication", "role")
		if err != nil || role != "master" {
			return false, fmt.Errorf("%s: role %q: %v", now.Addr, role, err)
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("redistest: sentinel failover from %s: %v", old.Addr, err)
	}
	return now, time.Since(start)
}
