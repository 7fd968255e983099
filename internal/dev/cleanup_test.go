package dev

import (
	"context"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/internal/redistest"
)

// TestCreatedRecordsCreatedKeys: the keys a client creates, by any kind of
// write (command, pipeline, transaction, script), are recorded; keys that
// existed before, written or not, and keys only read are not.
func TestCreatedRecordsCreatedKeys(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	raw := srv.Client(t)
	ctx := context.Background()
	for _, k := range []string{"before:str", "before:set"} {
		if err := raw.SAdd(ctx, k, "x").Err(); k == "before:set" && err != nil {
			t.Fatal(err)
		}
	}
	raw.Del(ctx, "before:str")
	raw.Set(ctx, "before:str", "v", 0)

	rdb := redis.NewClient(srv.Options())
	t.Cleanup(func() { _ = rdb.Close() })
	created := NewCreated()
	rdb.AddHook(created.Hook())

	rdb.Get(ctx, "read:only")                // a read creates nothing
	rdb.Set(ctx, "before:str", "changed", 0) // existed before
	rdb.SAdd(ctx, "before:set", "y")         // existed before
	rdb.Set(ctx, "new:str", "v", 0)          // command
	rdb.Incr(ctx, "new:counter")             // command
	_, _ = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, "new:pipe", "f", "v")
		p.ZAdd(ctx, "new:zset", redis.Z{Score: 1, Member: "m"})
		return nil
	})
	_, _ = rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, "new:tx", "f", "v")
		p.PExpire(ctx, "new:tx", 0) // not a write that creates
		p.RPush(ctx, "new:list", "a")
		return nil
	})
	script := redis.NewScript(`redis.call("SET", KEYS[1], ARGV[1]); return redis.call("GET", KEYS[2])`)
	if err := script.Run(ctx, rdb, []string{"new:script", "read:script"}, "v").Err(); err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	rdb.LMove(ctx, "new:list", "new:dest", "RIGHT", "LEFT")

	want := []string{"new:counter", "new:dest", "new:list", "new:pipe", "new:script", "new:str", "new:tx", "new:zset", "read:script"}
	got := created.Keys()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("recorded %q, want %q", got, want)
	}
	// Remove deletes none of them, dev owns none by name: it reports those
	// still there as shared (new:list was emptied by RPOPLPUSH, new:tx had
	// expired, read:script never existed).
	rm, err := created.Remove(ctx, raw, NewOwned("devq"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(rm.Shared)
	if wantShared := []string{"new:counter", "new:dest", "new:pipe", "new:script", "new:str", "new:zset"}; rm.Keys != 0 || !slices.Equal(rm.Shared, wantShared) {
		t.Errorf("removed %+v: want no key removed and %q left as shared", rm, wantShared)
	}
}
