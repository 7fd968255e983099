package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"
)

// asynq's server records (asynq v0.26, internal/base): every running
// server writes a ServerInfo protobuf to asynq:servers:{host:pid:id}
// (expiring) and scores that key in the sorted set asynq:servers with the
// Unix time its record expires. asynq's own reader (Inspector.Servers)
// takes no context and also deletes stale entries; ServedQueues reads only,
// bounded by its context. TestServedQueuesMatchesAsynq pins the decoding to
// what a real asynq server writes.
const allServersKey = "asynq:servers"

// ServerInfo field numbers (asynq.proto).
const (
	siQueues protowire.Number = 5
	siStatus protowire.Number = 7
)

// ServedQueues returns the queues that live asynq servers (agentq workers,
// or any asynq server on this Redis) serve, by name: a server whose record
// has not expired and that is not stopped. It is one read of asynq's server
// index and one pipelined read of the live servers' records, and writes
// nothing. A record it cannot decode is skipped.
func (in *Inspector) ServedQueues(ctx context.Context) (map[string]bool, error) {
	return servedQueues(ctx, in.rdb, time.Now())
}

func servedQueues(ctx context.Context, rdb redis.UniversalClient, now time.Time) (map[string]bool, error) {
	keys, err := rdb.ZRangeByScore(ctx, allServersKey, &redis.ZRangeBy{Min: strconv.FormatInt(now.Unix(), 10), Max: "+inf"}).Result()
	if err != nil {
		return nil, fmt.Errorf("queue: list asynq servers: %w", err)
	}
	served := map[string]bool{}
	if len(keys) == 0 {
		return served, nil
	}
	// One GET per record: the records' keys are in different Cluster
	// slots, so no MGET; a pipeline is one round trip per node.
	cmds := make([]*redis.StringCmd, len(keys))
	_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Get(ctx, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("queue: read asynq servers: %w", err)
	}
	for _, c := range cmds {
		b, err := c.Bytes()
		if err != nil {
			continue // expired between the two reads
		}
		queues, status, ok := decodeServerInfo(b)
		if !ok || status == "stopped" || status == "closed" {
			continue
		}
		for _, q := range queues {
			served[q] = true
		}
	}
	return served, nil
}

// decodeServerInfo reads the queue names and the status of asynq's
// ServerInfo message b; ok is false when b is not such a message.
func decodeServerInfo(b []byte) (queues []string, status string, ok bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, "", false
		}
		b = b[n:]
		switch {
		case num == siQueues && typ == protowire.BytesType:
			entry, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, "", false
			}
			b = b[n:]
			q, ok := mapEntryKey(entry)
			if !ok {
				return nil, "", false
			}
			queues = append(queues, q)
		case num == siStatus && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, "", false
			}
			b = b[n:]
			status = string(v)
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, "", false
			}
			b = b[n:]
		}
	}
	return queues, status, true
}

// mapEntryKey reads the string key (field 1) of a protobuf map entry.
func mapEntryKey(b []byte) (string, bool) {
	key := ""
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", false
			}
			key, b = string(v), b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
	}
	return key, true
}

// allQueuesKey is asynq's set of the queues that ever held a task.
const allQueuesKey = "asynq:queues"

// KnownQueues returns the names of the queues asynq knows (those that ever
// held a task), sorted: Queues, bounded by ctx (asynq's own reader takes
// no context), for shell completion.
func (in *Inspector) KnownQueues(ctx context.Context) ([]string, error) {
	qs, err := in.rdb.SMembers(ctx, allQueuesKey).Result()
	if err != nil {
		return nil, fmt.Errorf("queue: list queues: %w", err)
	}
	slices.Sort(qs)
	return qs, nil
}
