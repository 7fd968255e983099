package queue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"
)

// asynq's server records, for health checks and for telling which queues
// some worker serves. Every asynq server (one per dequeue loop of a worker
// process) writes a record every 5 seconds (its heartbeat): the key
// asynq:servers:{host:pid:server_id}, a protobuf ServerInfo with a 10-second
// TTL, and that key in the sorted set asynq:servers scored by when the
// record expires. A server that stops cleanly deletes both; one that dies
// leaves them to expire. asynq v0.26, heartbeat.go and internal/rdb; the
// keys are in keys.go.

// ServerHeartbeatInterval is how often an asynq server rewrites its record
// (asynq v0.26, server.go: the heartbeater's interval).
const ServerHeartbeatInterval = 5 * time.Second

// ServerRecordTTL is how long a server record lives after its last
// heartbeat (twice the interval, asynq v0.26 heartbeat.go): a server not
// heard from for longer is gone.
const ServerRecordTTL = 2 * ServerHeartbeatInterval

// Server is one asynq server (one dequeue loop of a worker process) whose
// record has not expired: it wrote a heartbeat within ServerRecordTTL.
type Server struct {
	// ID is asynq's server id (a UUID).
	ID string
	// Host is the server's os.Hostname(): in a container, the container's
	// hostname (Docker: the container id unless set; Kubernetes: the pod
	// name).
	Host string
	// PID is the server's process id (1 for a container's main process).
	PID int
	// Concurrency is the server's share of the worker's concurrency.
	Concurrency int
	// Queues maps the queues the server takes tasks from to their priority.
	Queues map[string]int
	// StrictPriority reports strict queue priority.
	StrictPriority bool
	// Status is asynq's: "active" while it takes tasks, "stopped" once told
	// to stop taking new ones.
	Status string
	// Started is when the server started.
	Started time.Time
	// ActiveWorkers counts the tasks it was running at its last heartbeat.
	ActiveWorkers int
	// Expires is when its record expires unless it writes another
	// heartbeat; LastHeartbeat (Expires - ServerRecordTTL) is when it
	// wrote the last one, by its own clock.
	Expires, LastHeartbeat time.Time
}

// ServerFilter selects server records. The zero value selects all.
type ServerFilter struct {
	// Host keeps the servers of this host only; "" keeps all. Only the
	// matching records are read, so a health check costs two round trips
	// whatever the size of the fleet.
	Host string
	// PID, when not 0, keeps the servers of this process only.
	PID int
}

// Servers returns the asynq servers whose records have not expired, that
// f selects, sorted by host, pid and id. A record that vanished between
// the two reads (its server stopped) is left out, as is one asynq would
// not decode.
func (in *Inspector) Servers(ctx context.Context, f ServerFilter) ([]Server, error) {
	now := time.Now()
	zs, err := in.rdb.ZRangeByScoreWithScores(ctx, asynqAllServers, &redis.ZRangeBy{
		Min: strconv.FormatInt(now.Unix(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("queue: list worker servers: %w", err)
	}
	type pending struct {
		key     string
		expires time.Time
		get     *redis.StringCmd
	}
	var want []pending
	for _, z := range zs {
		key, ok := z.Member.(string)
		if !ok {
			continue
		}
		host, pid, _, ok := parseServerKey(key)
		if !ok || (f.Host != "" && host != f.Host) || (f.PID != 0 && pid != f.PID) {
			continue
		}
		want = append(want, pending{key: key, expires: time.Unix(int64(z.Score), 0)})
	}
	if len(want) == 0 {
		return nil, nil
	}
	// One GET per record (each key has a tag of its own, so no MGET on
	// Cluster), in one pipeline.
	pipe := in.rdb.Pipeline()
	for i := range want {
		want[i].get = pipe.Get(ctx, want[i].key)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("queue: read worker servers: %w", err)
	}
	out := make([]Server, 0, len(want))
	for _, p := range want {
		data, err := p.get.Bytes()
		if err != nil {
			continue // expired or deleted since the listing
		}
		s, err := decodeServerInfo(data)
		if err != nil {
			continue // asynq would skip it too
		}
		s.Expires = p.expires
		s.LastHeartbeat = p.expires.Add(-ServerRecordTTL)
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Server) int {
		return cmp.Or(strings.Compare(a.Host, b.Host), cmp.Compare(a.PID, b.PID), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// parseServerKey splits asynq:servers:{host:pid:server_id}. The host may
// hold colons (it is read from the right); the pid is decimal.
func parseServerKey(key string) (host string, pid int, id string, ok bool) {
	rest, found := strings.CutPrefix(key, asynqServerKeyPrefix)
	if !found {
		return "", 0, "", false
	}
	rest, found = strings.CutSuffix(rest, "}")
	if !found {
		return "", 0, "", false
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return "", 0, "", false
	}
	rest, id = rest[:i], rest[i+1:]
	j := strings.LastIndexByte(rest, ':')
	if j < 0 {
		return "", 0, "", false
	}
	host, pidText := rest[:j], rest[j+1:]
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid < 0 || host == "" || id == "" {
		return "", 0, "", false
	}
	return host, pid, id, true
}

// ServerInfo field numbers (asynq v0.26, internal/proto/asynq.proto).
const (
	siHost           protowire.Number = 1
	siPID            protowire.Number = 2
	siServerID       protowire.Number = 3
	siConcurrency    protowire.Number = 4
	siQueues         protowire.Number = 5
	siStrictPriority protowire.Number = 6
	siStatus         protowire.Number = 7
	siStartTime      protowire.Number = 8
	siActiveWorkers  protowire.Number = 9
)

var errBadServerInfo = errors.New("queue: malformed asynq server record")

// decodeServerInfo decodes asynq's protobuf ServerInfo. It is total: any
// input returns a Server or an error, in time linear in its length.
// TestServersMatchAsynq pins it to what asynq writes.
func decodeServerInfo(b []byte) (Server, error) {
	var s Server
	err := eachField(b, func(num protowire.Number, typ protowire.Type, _, bs []byte, v uint64) error {
		switch {
		case num == siHost && typ == protowire.BytesType:
			s.Host = string(bs)
		case num == siServerID && typ == protowire.BytesType:
			s.ID = string(bs)
		case num == siStatus && typ == protowire.BytesType:
			s.Status = string(bs)
		case num == siPID && typ == protowire.VarintType:
			s.PID = int(int32(v))
		case num == siConcurrency && typ == protowire.VarintType:
			s.Concurrency = int(int32(v))
		case num == siActiveWorkers && typ == protowire.VarintType:
			s.ActiveWorkers = int(int32(v))
		case num == siStrictPriority && typ == protowire.VarintType:
			s.StrictPriority = v != 0
		case num == siQueues && typ == protowire.BytesType:
			var k string
			var p int
			if err := eachField(bs, func(n protowire.Number, t protowire.Type, _, bs []byte, v uint64) error {
				switch {
				case n == 1 && t == protowire.BytesType:
					k = string(bs)
				case n == 2 && t == protowire.VarintType:
					p = int(int32(v))
				}
				return nil
			}); err != nil {
				return err
			}
			if s.Queues == nil {
				s.Queues = map[string]int{}
			}
			s.Queues[k] = p
		case num == siStartTime && typ == protowire.BytesType:
			var sec int64
			var nsec int32
			if err := eachField(bs, func(n protowire.Number, t protowire.Type, _, _ []byte, v uint64) error {
				switch {
				case n == 1 && t == protowire.VarintType:
					sec = int64(v)
				case n == 2 && t == protowire.VarintType:
					nsec = int32(v)
				}
				return nil
			}); err != nil {
				return err
			}
			s.Started = time.Unix(sec, int64(nsec))
		}
		return nil
	})
	if err != nil {
		return Server{}, err
	}
	if !utf8.ValidString(s.Host) || !utf8.ValidString(s.ID) || !utf8.ValidString(s.Status) {
		return Server{}, errBadServerInfo
	}
	return s, nil
}
