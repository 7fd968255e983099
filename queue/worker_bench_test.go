package queue

import (
	"context"
	"errors"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/jobs"
)

type benchArgs struct{}

func (benchArgs) Kind() string { return "bench.noop" }

// BenchmarkProcessTask measures one attempt through the worker's chain,
// decision and outcome mapping, without Redis: a no-op handler and
// middleware that adds nothing, so allocs/op is the worker's own cost.
func BenchmarkProcessTask(b *testing.B) {
	nop := jobs.ObserverFunc(func(context.Context, *jobs.Step, *jobs.Result) {})
	for _, tc := range []struct {
		name      string
		err       error
		observers []jobs.Observer
	}{
		{"success", nil, nil},
		{"retry", errors.New("boom"), nil},
		{"success_4_observers", nil, []jobs.Observer{nop, nop, nop, nop}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			reg := NewRegistry()
			if err := Register(reg, `{"type":"object"}`, func(context.Context, *jobs.Step, benchArgs) error { return tc.err }); err != nil {
				b.Fatal(err)
			}
			rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
			defer rdb.Close()
			log := zerolog.New(discard{}).Level(zerolog.InfoLevel)
			w, err := NewWorker(rdb, reg, WorkerConfig{Logger: &log, Observers: tc.observers})
			if err != nil {
				b.Fatal(err)
			}
			t := asynq.NewTaskWithHeaders("bench.noop", []byte(`{}`), map[string]string{jobs.HeaderWorkflow: "wf"})
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				_ = w.ProcessTask(ctx, t)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
