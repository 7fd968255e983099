package queue

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/agentq/agentq/internal/redistest"
)

// TestServersMatchAsynq runs real asynq servers and checks that Servers
// reports what asynq's own Inspector reports, with a heartbeat time, that
// the filter selects by host and pid, and that a stopped server is gone.
func TestServersMatchAsynq(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	in := NewInspector(rdb)
	ctx := context.Background()
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	queues := map[string]int{"critical": 6, "default": 1}
	var srvs []*asynq.Server
	for range 2 {
		srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Concurrency: 2, Queues: queues, StrictPriority: true,
			LogLevel: asynq.FatalLevel})
		if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
			t.Fatal(err)
		}
		srvs = append(srvs, srv)
	}
	before := time.Now().Add(-time.Second)
	want := waitServers(t, in, ServerFilter{}, 2)
	theirs, err := asynq.NewInspectorFromRedisClient(rdb).Servers()
	if err != nil {
		t.Fatal(err)
	}
	if len(theirs) != 2 {
		t.Fatalf("asynq lists %d servers, want 2", len(theirs))
	}
	for _, ts := range theirs {
		i := slices.IndexFunc(want, func(s Server) bool { return s.ID == ts.ID })
		if i < 0 {
			t.Fatalf("server %s that asynq lists is missing from %+v", ts.ID, want)
		}
		s := want[i]
		if s.Host != ts.Host || s.PID != ts.PID || s.Concurrency != ts.Concurrency || s.StrictPriority != ts.StrictPriority ||
			s.Status != ts.Status || !s.Started.Equal(ts.Started) || len(s.Queues) != len(ts.Queues) {
			t.Errorf("server %s = %+v, asynq says %+v", ts.ID, s, *ts)
		}
		for q, p := range ts.Queues {
			if s.Queues[q] != p {
				t.Errorf("server %s queue %s priority %d, asynq says %d", ts.ID, q, s.Queues[q], p)
			}
		}
	}
	for _, s := range want {
		if s.Host != host || s.PID != os.Getpid() || s.Status != "active" {
			t.Errorf("server = %+v, want host %s, pid %d, active", s, host, os.Getpid())
		}
		if s.LastHeartbeat.Before(before.Truncate(time.Second)) || s.LastHeartbeat.After(time.Now().Add(time.Second)) ||
			s.Expires.Sub(s.LastHeartbeat) != ServerRecordTTL {
			t.Errorf("heartbeat %v, expires %v: want a heartbeat since %v, expiring %v later", s.LastHeartbeat, s.Expires, before, ServerRecordTTL)
		}
	}

	cases := []struct {
		name string
		f    ServerFilter
		want int
	}{
		{"this host", ServerFilter{Host: host}, 2},
		{"this process", ServerFilter{Host: host, PID: os.Getpid()}, 2},
		{"another host", ServerFilter{Host: host + "-other"}, 0},
		{"another process", ServerFilter{PID: os.Getpid() + 1}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := in.Servers(ctx, tc.f)
			if err != nil || len(got) != tc.want {
				t.Fatalf("Servers(%+v) = %d servers (%v), want %d", tc.f, len(got), err, tc.want)
			}
		})
	}

	for _, srv := range srvs {
		srv.Shutdown()
	}
	if got, err := in.Servers(ctx, ServerFilter{}); err != nil || len(got) != 0 {
		t.Fatalf("after shutdown Servers = %+v (%v), want none", got, err)
	}
}

// TestServersSkipsExpiredAndForeignRecords: a record past its expiry (a
// dead worker's) and members that are no server keys are not listed.
func TestServersSkipsExpiredAndForeignRecords(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	in := NewInspector(rdb)
	ctx := context.Background()
	rec := appendServerInfoForTest(nil, "dead-host", 7, "sid-1", "active")
	now := time.Now().Unix()
	rdb.Set(ctx, "asynq:servers:{dead-host:7:sid-1}", rec, 0)
	rdb.ZAdd(ctx, asynqAllServers, redis.Z{Score: float64(now - 30), Member: "asynq:servers:{dead-host:7:sid-1}"})
	rdb.Set(ctx, "asynq:servers:{live-host:8:sid-2}", appendServerInfoForTest(nil, "live-host", 8, "sid-2", "active"), 0)
	rdb.ZAdd(ctx, asynqAllServers, redis.Z{Score: float64(now + 10), Member: "asynq:servers:{live-host:8:sid-2}"})
	rdb.ZAdd(ctx, asynqAllServers, redis.Z{Score: float64(now + 10), Member: "not-a-server-key"})
	rdb.ZAdd(ctx, asynqAllServers, redis.Z{Score: float64(now + 10), Member: "asynq:servers:{gone-host:9:sid-3}"}) // no record
	got, err := in.Servers(ctx, ServerFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Host != "live-host" || got[0].PID != 8 || got[0].ID != "sid-2" {
		t.Fatalf("Servers = %+v, want live-host's only", got)
	}
}

func TestParseServerKey(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, key string
		host      string
		pid       int
		id        string
		ok        bool
	}{
		{"plain", "asynq:servers:{worker-7d9f:1:5f0c}", "worker-7d9f", 1, "5f0c", true},
		{"host with colons", "asynq:servers:{fe80::1:42:abc}", "fe80::1", 42, "abc", true},
		{"no tag", "asynq:servers:worker:1:abc", "", 0, "", false},
		{"bad pid", "asynq:servers:{worker:x:abc}", "", 0, "", false},
		{"no id", "asynq:servers:{worker:1:}", "", 0, "", false},
		{"no host", "asynq:servers:{:1:abc}", "", 0, "", false},
		{"workers key", "asynq:workers:{worker:1:abc}", "", 0, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			host, pid, id, ok := parseServerKey(tc.key)
			if host != tc.host || pid != tc.pid || id != tc.id || ok != tc.ok {
				t.Fatalf("parseServerKey(%q) = %q, %d, %q, %v; want %q, %d, %q, %v", tc.key, host, pid, id, ok, tc.host, tc.pid, tc.id, tc.ok)
			}
		})
	}
}

// FuzzServerRecord: decoding any record and parsing any key returns,
// and what decodes is valid UTF-8.
func FuzzServerRecord(f *testing.F) {
	f.Add(appendServerInfoForTest(nil, "worker-1", 1, "5f0c", "active"), "asynq:servers:{worker-1:1:5f0c}")
	f.Add([]byte{0x2a, 0x03, 0x0a, 0x01, 0x61}, "asynq:servers:{a::1:b}")
	f.Add([]byte{0x0b, 0x0b, 0x0c}, "asynq:servers:{")
	f.Fuzz(func(t *testing.T, rec []byte, key string) {
		s, err := decodeServerInfo(rec)
		if err == nil && (!isUTF8(s.Host) || !isUTF8(s.ID) || !isUTF8(s.Status)) {
			t.Fatalf("decoded invalid UTF-8: %+v", s)
		}
		if host, _, id, ok := parseServerKey(key); ok && (host == "" || id == "" || strings.ContainsRune(id, ':')) {
			t.Fatalf("parseServerKey(%q) = host %q, id %q", key, host, id)
		}
	})
}

func isUTF8(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// appendServerInfoForTest encodes a ServerInfo as asynq does (enough of
// it for these tests): host, pid, id, concurrency 1, queue default,
// status and a start time.
func appendServerInfoForTest(b []byte, host string, pid int, id, status string) []byte {
	b = appendString(b, siHost, host)
	b = appendVarint(b, siPID, uint64(pid))
	b = appendString(b, siServerID, id)
	b = appendVarint(b, siConcurrency, 1)
	var entry []byte
	entry = appendString(entry, 1, "default")
	entry = appendVarint(entry, 2, 1)
	b = protowire.AppendTag(b, siQueues, protowire.BytesType)
	b = protowire.AppendBytes(b, entry)
	b = appendString(b, siStatus, status)
	var ts []byte
	ts = appendVarint(ts, 1, uint64(time.Now().Unix()))
	b = protowire.AppendTag(b, siStartTime, protowire.BytesType)
	return protowire.AppendBytes(b, ts)
}

// waitServers waits (up to 10s, asynq's first heartbeat comes at start)
// for n servers that f selects.
func waitServers(t *testing.T, in *Inspector, f ServerFilter, n int) []Server {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := in.Servers(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("Servers = %d servers, want %d", len(got), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
