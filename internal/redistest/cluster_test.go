//go:build unix

package redistest_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/internal/redistest"
)

// TestClusterFailover starts a cluster, writes through a cluster client,
// kills the master of the key's slot and sees its replica take over.
func TestClusterFailover(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, redistest.ClusterOptions{})
	if len(c.Nodes) != 6 {
		t.Fatalf("nodes = %d, want 6", len(c.Nodes))
	}
	ctx := context.Background()
	cc := c.Client(t)
	if err := cc.Set(ctx, "{k}a", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// The write reaches the replica before the master dies.
	m := redis.NewClient(&redis.Options{Addr: c.MasterOf(t, "{k}a").Addr})
	defer m.Close()
	if n, err := m.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v", n, err)
	}
	old := c.KillMasterOf(t, "{k}a")
	now, took := c.WaitFailover(t, "{k}a", old, 20*time.Second)
	t.Logf("failover %s -> %s in %v", old.Addr, now.Addr, took)
	if now == old || !now.Alive() {
		t.Fatalf("new master %v", now.Addr)
	}
	cc.ReloadState(ctx)
	var v string
	var err error
	for range 50 {
		if v, err = cc.Get(ctx, "{k}a").Result(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v != "1" {
		t.Fatalf("after failover get = %q, %v", v, err)
	}
}

// TestSentinelFailover starts a Sentinel setup, writes through a failover
// client, kills the master and sees the replica promoted.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	s := redistest.StartSentinel(t, redistest.SentinelOptions{})
	ctx := context.Background()
	fc := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: s.MasterName, SentinelAddrs: s.Addrs})
	defer fc.Close()
	if err := fc.Set(ctx, "a", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := fc.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v", n, err)
	}
	old := s.KillMaster(t)
	now, took := s.WaitFailover(t, old, 30*time.Second)
	t.Logf("failover %s -> %s in %v", old.Addr, now.Addr, took)
	if now == old {
		t.Fatal("same master")
	}
	var v string
	var err error
	for range 50 {
		if v, err = fc.Get(ctx, "a").Result(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v != "1" {
		t.Fatalf("after failover get = %q, %v", v, err)
	}
}
