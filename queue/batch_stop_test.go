package queue

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
)

// cancelingReader yields prefix, then fill repeated forever; it cancels its
// context once it has yielded after bytes, as Ctrl-C would in the middle of
// `agentq enqueue --batch /dev/zero` or `yes '{...}' | agentq enqueue --batch -`.
type cancelingReader struct {
	prefix []byte
	fill   []byte
	after  int
	cancel context.CancelFunc
	n      int // bytes yielded
}

func (r *cancelingReader) Read(p []byte) (int, error) {
	if r.n >= r.after {
		r.cancel()
	}
	n := 0
	for n < len(p) {
		if r.n < len(r.prefix) {
			c := copy(p[n:], r.prefix[r.n:])
			n += c
			r.n += c
			continue
		}
		off := (r.n - len(r.prefix)) % len(r.fill)
		c := copy(p[n:], r.fill[off:])
		n += c
		r.n += c
	}
	return n, nil
}

var _ io.Reader = (*cancelingReader)(nil)

// TestEnqueueBatchStopsWhenCanceled: a batch honours its context also in
// the middle of an endless line, and its summary accounts for every line
// read: enqueued, duplicate, rejected or not done, with the first line not
// done in StoppedAt (issue 7, new-user trial).
func TestEnqueueBatchStopsWhenCanceled(t *testing.T) {
	t.Parallel()
	const echo = `{"kind":"test.echo","payload":{"n":1}}` + "\n"
	const wholeChunks = -1
	tests := []struct {
		name   string
		prefix string
		fill   string
		after  int
		// want: the summary's counts and StoppedAt.
		lines, enqueued, notDone, stoppedAt int
	}{
		// /dev/zero: one endless line with no newline.
		{name: "endless line", fill: "\x00", after: 8 << 20, stoppedAt: 1},
		// Lines read into the chunk are not sent once interrupted.
		{name: "endless line after good lines", prefix: echo + echo + "\n" + `{"kind":"nope","payload":{}}` + "\n", fill: "x", after: 4 << 20,
			lines: 3, notDone: 2, stoppedAt: 1},
		// yes '{...}': cancelled while reading; the chunks before are
		// enqueued whole (how many depends on the read buffer), none after.
		{name: "endless lines", fill: echo, after: (2*BatchChunk + 10) * len(echo), enqueued: wholeChunks},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, ClientConfig{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r := &cancelingReader{prefix: []byte(tc.prefix), fill: []byte(tc.fill), after: tc.after, cancel: cancel}
			sum, err := b.client.EnqueueBatch(ctx, r, nil)
			if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "interrupted at line") {
				t.Fatalf("err = %v, want an interruption wrapping context.Canceled", err)
			}
			// Promptly: within one read buffer (64 KiB) of the cancel.
			if r.n > tc.after+(128<<10) {
				t.Errorf("read %d bytes, %d after the cancel", r.n, r.n-tc.after)
			}
			if tc.lines != 0 && sum.Lines != tc.lines {
				t.Errorf("lines = %d, want %d", sum.Lines, tc.lines)
			}
			if tc.enqueued == wholeChunks {
				if sum.Enqueued < 2*BatchChunk || sum.Enqueued%BatchChunk != 0 || sum.StoppedAt != sum.Enqueued+1 {
					t.Errorf("enqueued = %d, stopped at %d; want whole chunks, at least 2, and the line after them", sum.Enqueued, sum.StoppedAt)
				}
			} else if sum.Enqueued != tc.enqueued || sum.StoppedAt != tc.stoppedAt {
				t.Errorf("enqueued = %d, stopped at %d; want %d, %d", sum.Enqueued, sum.StoppedAt, tc.enqueued, tc.stoppedAt)
			}
			if tc.notDone != 0 && sum.NotDone != tc.notDone {
				t.Errorf("not done = %d, want %d", sum.NotDone, tc.notDone)
			}
			if got := sum.Enqueued + sum.Duplicates + len(sum.Rejected) + sum.NotDone; got != sum.Lines {
				t.Errorf("summary %+v accounts for %d of %d lines", sum, got, sum.Lines)
			}
			if got := int(b.rdb.LLen(context.Background(), "asynq:{default}:pending").Val()); got != sum.Enqueued {
				t.Errorf("queue holds %d tasks, summary says %d enqueued", got, sum.Enqueued)
			}
		})
	}
}

// TestEnqueueBatchCanceledDuringSends: when ctx ends while a chunk is being
// sent, the sends it cut short are counted as not done, StoppedAt names the
// first, and the error says the batch was interrupted rather than showing
// Redis's "context canceled" as if Redis had failed.
func TestEnqueueBatchCanceledDuringSends(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var admitted atomic.Int32
	b := setup(t, ClientConfig{Admit: func(context.Context, string, EnqueueOptions) error {
		// The chunk is full on this line and is sent with ctx done.
		if admitted.Add(1) == BatchChunk {
			cancel()
		}
		return nil
	}})
	in := strings.Repeat(`{"kind":"test.echo","payload":{"n":1}}`+"\n", BatchChunk+5)
	sum, err := b.client.EnqueueBatch(ctx, strings.NewReader(in), nil)
	if !errors.Is(err, context.Canceled) || err.Error() != "interrupted at line 1: context canceled" {
		t.Fatalf("err = %v, want %q", err, "interrupted at line 1: context canceled")
	}
	if sum.Lines != BatchChunk || sum.Enqueued != 0 || sum.NotDone != BatchChunk || sum.StoppedAt != 1 {
		t.Fatalf("summary: lines=%d enqueued=%d not done=%d stopped at=%d; want %d, 0, %d, 1",
			sum.Lines, sum.Enqueued, sum.NotDone, sum.StoppedAt, BatchChunk, BatchChunk)
	}
}
