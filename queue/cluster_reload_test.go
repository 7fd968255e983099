//go:build unix

package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/internal/redistest"
)

// TestClusterClientFollowsFailover kills the master of a key's slot and
// checks that a client from NewRedis writes to the promoted replica well
// before go-redis's periodic slot-map reload (60s): without the reload on
// network errors, every write to the slot fails until then
// (redis/go-redis#3979).
func TestClusterClientFollowsFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	t.Parallel()
	c := redistest.StartCluster(t, redistest.ClusterOptions{})
	rdb, err := RedisConfig{ClusterAddrs: c.Addrs}.NewRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	ctx := context.Background()
	const key = "{failover}k"
	if err := rdb.Set(ctx, key, "before", 0).Err(); err != nil {
		t.Fatal(err)
	}
	old := c.KillMasterOf(t, key)
	c.WaitFailover(t, key, old, 30*time.Second)
	// Bounded well under go-redis's 60s periodic reload: not a speed check,
	// the difference between following the failover and not.
	deadline := time.Now().Add(15 * time.Second)
	var fails int
	for {
		err := rdb.Set(ctx, key, "after", 0).Err()
		if err == nil {
			break
		}
		fails++
		if time.Now().After(deadline) {
			t.Fatalf("writes to the failed-over slot still fail after 15s (%d failures): %v", fails, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d writes failed before the client followed the failover", fails)
}

func TestIsNetError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, true},
		{"eof", fmt.Errorf("read: %w", io.EOF), true},
		{"redis reply", redis.Nil, false},
		{"moved", errors.New("MOVED 1 127.0.0.1:1"), false},
		{"context", context.Canceled, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isNetError(tc.err); got != tc.want {
				t.Errorf("isNetError(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
