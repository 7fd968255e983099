package queue

import (
	"context"
	"testing"

	"github.com/hibiken/asynq"
)

// casPre sets KEYS[1]'s field v to ARGV[2] when it holds ARGV[1], and says
// go on only then.
var casPre = `
if (redis.call('HGET', KEYS[1], 'v') or '') ~= ARGV[1] then
  return {0, 'conflict'}
end
redis.call('HSET', KEYS[1], 'v', ARGV[2])
return {1, 'applied'}`

func TestEnqueueWith(t *testing.T) {
	t.Parallel()
	for _, cluster := range []bool{false, true} {
		t.Run(map[bool]string{false: "one script", true: "two calls, as on Cluster"}[cluster], func(t *testing.T) {
			t.Parallel()
			b := setup(t, ClientConfig{})
			b.client.cluster = cluster
			ctx := context.Background()
			state := "agentq:{run:x}"
			opts := EnqueueOptions{Key: "x/step2", RunID: "x", Step: "step2"}

			// Pre applies: the task is enqueued with it.
			reply, res, enq, err := b.client.EnqueueWith(ctx, Pre{Src: casPre, Keys: []string{state}, Args: []any{"", "1"}}, "test.echo", []byte(RunStepPayload), opts)
			if err != nil || !enq || res.Duplicate || len(reply) != 2 || reply[1] != "applied" {
				t.Fatalf("first: reply %v res %+v enqueued %v err %v", reply, res, enq, err)
			}
			if v := b.rdb.HGet(ctx, state, "v").Val(); v != "1" {
				t.Fatalf("state v = %q, want 1", v)
			}
			info, err := b.insp.GetTaskInfo("default", res.ID)
			if err != nil || info.State != asynq.TaskStatePending || info.Headers["agentq-step"] != "step2" {
				t.Fatalf("task %s: %+v %v", res.ID, info, err)
			}

			// Pre refuses (stale version): nothing is enqueued.
			reply, _, enq, err = b.client.EnqueueWith(ctx, Pre{Src: casPre, Keys: []string{state}, Args: []any{"", "2"}}, "test.echo", []byte(RunStepPayload), EnqueueOptions{Key: "x/step3", RunID: "x", Step: "step3"})
			if err != nil || enq || len(reply) != 2 || reply[1] != "conflict" {
				t.Fatalf("stale: reply %v enqueued %v err %v", reply, enq, err)
			}
			if n := queueSize(t, b, "default"); n != 1 {
				t.Fatalf("%d tasks pending after a refused pre, want 1", n)
			}

			// Pre applies, the task exists already: a duplicate, state moves.
			_, res, enq, err = b.client.EnqueueWith(ctx, Pre{Src: casPre, Keys: []string{state}, Args: []any{"1", "2"}}, "test.echo", []byte(RunStepPayload), opts)
			if err != nil || !enq || !res.Duplicate {
				t.Fatalf("again: res %+v enqueued %v err %v", res, enq, err)
			}

			// A refused enqueue (validation) runs nothing.
			_, _, enq, err = b.client.EnqueueWith(ctx, Pre{Src: casPre, Keys: []string{state}, Args: []any{"2", "3"}}, "test.echo", []byte(`{"mode":1}`), EnqueueOptions{})
			if err == nil || enq || b.rdb.HGet(ctx, state, "v").Val() != "2" {
				t.Fatalf("invalid payload: enqueued %v err %v; state must stay 2", enq, err)
			}
		})
	}
}
