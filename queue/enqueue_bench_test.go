package queue

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
)

// BenchmarkEnqueuePrepare measures what an enqueue costs before Redis:
// validation and building what is sent.
func BenchmarkEnqueuePrepare(b *testing.B) {
	reg := NewRegistry()
	if err := Register(reg, echoSchema, nilEcho); err != nil {
		b.Fatal(err)
	}
	c, err := NewClient(nil, reg, ClientConfig{})
	if err != nil {
		b.Fatal(err)
	}
	if err := Register(reg, `{"type":"object","additionalProperties":false}`, nilNoop); err != nil {
		b.Fatal(err)
	}
	echo := []byte(`{"n":1,"mode":"fast"}`)
	for _, bc := range []struct {
		name    string
		kind    string
		payload []byte
		o       EnqueueOptions
	}{
		{"noop/plain", "test.noop", []byte(`{}`), EnqueueOptions{}},
		{"noop/keyed", "test.noop", []byte(`{}`), EnqueueOptions{Key: "order-42"}},
		{"echo/plain", "test.echo", echo, EnqueueOptions{}},
		{"echo/keyed", "test.echo", echo, EnqueueOptions{Key: "order-42", RunID: "run-1"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.prepare(bc.kind, bc.payload, bc.o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func nilEcho(context.Context, *jobs.Step, echoArgs) error { return nil }

// BenchmarkEnqueue compares raw asynq.Client.Enqueue with Client.Enqueue,
// keyed and plain, on the same redis-server, one caller and b.RunParallel.
// Ratios mean something only on an otherwise idle machine.
func BenchmarkEnqueue(b *testing.B) {
	srv := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, DB: srv.DB, PoolSize: 64})
	b.Cleanup(func() { _ = rdb.Close() })
	reg := NewRegistry()
	if err := Register(reg, echoSchema, nilEcho); err != nil {
		b.Fatal(err)
	}
	c, err := NewClient(rdb, reg, ClientConfig{})
	if err != nil {
		b.Fatal(err)
	}
	ac := asynq.NewClientFromRedisClient(rdb)
	payload := []byte(`{"n":1}`)
	var seq atomic.Int64
	ctx := context.Background()
	enqueuers := []struct {
		name string
		fn   func() error
	}{
		{"asynq", func() error {
			_, err := ac.EnqueueContext(ctx, asynq.NewTask("test.echo", payload), asynq.MaxRetry(10))
			return err
		}},
		{"keyed", func() error {
			_, err := c.Enqueue(ctx, "test.echo", payload, EnqueueOptions{Key: "k-" + strconv.FormatInt(seq.Add(1), 10)})
			return err
		}},
		{"plain", func() error {
			_, err := c.Enqueue(ctx, "test.echo", payload, EnqueueOptions{})
			return err
		}},
	}
	for _, mode := range []string{"sequential", "parallel"} {
		for _, e := range enqueuers {
			b.Run(mode+"/"+e.name, func(b *testing.B) {
				if err := rdb.FlushDB(ctx).Err(); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				if mode == "sequential" {
					for b.Loop() {
						if err := e.fn(); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := e.fn(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

type noopArgs struct{}

func (noopArgs) Kind() string { return "test.noop" }

func nilNoop(context.Context, *jobs.Step, noopArgs) error { return nil }
