package queue

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// BatchChunk is how many lines a batch validates and claims per Redis round
// trip.
const BatchChunk = 512

// batchSenders is how many enqueues of one chunk run at once.
const batchSenders = 16

// BatchLine is one line of a JSONL batch file.
type BatchLine struct {
	Kind      string          `json:"kind"`
	Payload   json.RawMessage `json:"payload"`
	Key       string          `json:"key,omitempty"`
	Queue     string          `json:"queue,omitempty"`
	Workflow  string          `json:"workflow,omitempty"`
	RunID     string          `json:"run_id,omitempty"`
	MaxRetry  *int            `json:"max_retry,omitempty"`
	Timeout   string          `json:"timeout,omitempty"`
	In        string          `json:"in,omitempty"`
	RetryBase string          `json:"retry_base,omitempty"`
	RetryMax  string          `json:"retry_max,omitempty"`
	ReplayOf  string          `json:"replay_of,omitempty"`
}

// Rejection is a batch line that was refused, with why.
type Rejection struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

// BatchSummary says what a batch enqueue did.
type BatchSummary struct {
	// Lines is the number of non-blank lines read.
	Lines int `json:"lines"`
	// Enqueued counts new tasks.
	Enqueued int `json:"enqueued"`
	// Duplicates counts lines whose key was already used.
	Duplicates int `json:"duplicates"`
	// Rejected lists refused lines with their line numbers.
	Rejected []Rejection `json:"rejected"`
	// Results has one entry per enqueued or duplicate line, in line order.
	Results []BatchResult `json:"-"`
}

// BatchResult is the result of one accepted line.
type BatchResult struct {
	Line int `json:"line"`
	Result
}

// ParseBatchLine decodes one JSONL line into a kind, payload and options.
// Unknown fields are refused so that a typo does not silently drop a setting.
func ParseBatchLine(line []byte) (kind string, payload []byte, o EnqueueOptions, err error) {
	var bl BatchLine
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&bl); err != nil {
		return "", nil, o, fmt.Errorf("not a valid task line: %w", err)
	}
	if bl.Kind == "" {
		return "", nil, o, errors.New(`"kind" is missing`)
	}
	if len(bl.Payload) == 0 || string(bl.Payload) == "null" {
		return "", nil, o, errors.New(`"payload" is missing`)
	}
	o = EnqueueOptions{Queue: bl.Queue, Workflow: bl.Workflow, RunID: bl.RunID, Key: bl.Key, ReplayOf: bl.ReplayOf}
	if bl.MaxRetry != nil {
		if *bl.MaxRetry < 0 {
			return "", nil, o, fmt.Errorf(`"max_retry" must not be negative, got %d`, *bl.MaxRetry)
		}
		o.MaxAttempts = *bl.MaxRetry + 1
	}
	for _, d := range []struct {
		name string
		in   string
		out  *time.Duration
	}{{"timeout", bl.Timeout, &o.Timeout}, {"in", bl.In, &o.In}, {"retry_base", bl.RetryBase, &o.RetryBase}, {"retry_max", bl.RetryMax, &o.RetryMax}} {
		if d.in == "" {
			continue
		}
		v, err := time.ParseDuration(d.in)
		if err != nil {
			return "", nil, o, fmt.Errorf("%q: %q is not a duration (e.g. 30s)", d.name, d.in)
		}
		*d.out = v
	}
	return bl.Kind, bl.Payload, o, nil
}

// EnqueueBatch reads JSONL from r, one task a line, and enqueues every valid
// line. Lines are validated and their idempotency keys claimed a chunk at a
// time in one pipelined round trip; the enqueues of a chunk then run
// concurrently. Invalid lines are rejected with their line numbers and do not
// stop the batch. A Redis error stops it: the summary then says exactly what
// was enqueued and the error names the first line not done.
// progress, if non-nil, is called after each chunk with the lines done.
func (c *Client) EnqueueBatch(ctx context.Context, r io.Reader, progress func(done int)) (BatchSummary, error) {
	var sum BatchSummary
	// Load the scripts once so the pipelined EVALSHAs find them.
	for _, sc := range []*redis.Script{claimScript, commitScript} {
		if err := sc.Load(ctx, c.rdb).Err(); err != nil {
			return sum, fmt.Errorf("load idempotency scripts: %w", err)
		}
	}
	br := bufio.NewReaderSize(r, 64<<10)
	maxLine := c.cfg.MaxPayloadBytes + 64<<10
	lineNo := 0
	chunk := make([]batchItem, 0, BatchChunk)
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		err := c.runChunk(ctx, chunk, &sum)
		chunk = chunk[:0]
		if progress != nil {
			progress(sum.Lines)
		}
		return err
	}
	for {
		raw, tooLong, readErr := readLine(br, maxLine)
		if readErr != nil && readErr != io.EOF {
			if err := flush(); err != nil {
				return sum, err
			}
			return sum, fmt.Errorf("read batch after line %d: %w", lineNo, readErr)
		}
		if readErr == io.EOF && len(raw) == 0 && !tooLong {
			break
		}
		lineNo++
		line := bytes.TrimSpace(raw)
		if len(line) > 0 || tooLong {
			sum.Lines++
			it := batchItem{line: lineNo}
			if tooLong {
				it.err = fmt.Errorf("line is longer than %d bytes (enqueue.max_payload_bytes plus 64 KiB)", maxLine)
			} else {
				var (
					kind    string
					payload []byte
					o       EnqueueOptions
				)
				kind, payload, o, it.err = ParseBatchLine(line)
				if it.err == nil {
					it.kind = kind
					it.p, it.err = c.prepare(kind, payload, o)
				}
				if it.err == nil && c.cfg.Admit != nil {
					it.err = c.cfg.Admit(ctx, kind, o)
				}
			}
			chunk = append(chunk, it)
			if len(chunk) == BatchChunk {
				if err := flush(); err != nil {
					return sum, err
				}
			}
		}
		if readErr == io.EOF {
			break
		}
	}
	return sum, flush()
}

// readLine reads one line without its newline. A line longer than max is
// consumed to its end and reported as tooLong, so that one bad line does
// not stop the batch.
func readLine(br *bufio.Reader, max int) (line []byte, tooLong bool, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(frag) > max+1 {
				tooLong, line = true, nil
			} else {
				line = append(line, frag...)
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err != nil:
			return line, tooLong, err
		}
		return bytes.TrimSuffix(line, []byte("\n")), tooLong, nil
	}
}

type batchItem struct {
	line    int
	kind    string
	p       *prepared
	err     error
	dup     string
	isDup   bool
	claimed bool
	res     Result
	sendErr error
}

func (c *Client) runChunk(ctx context.Context, items []batchItem, sum *BatchSummary) error {
	// One round trip claims every keyed line of the chunk, in line order, so
	// a key repeated within the chunk is a duplicate of its first line.
	pipe := c.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(items))
	for i := range items {
		it := &items[i]
		if it.err != nil || it.p.token == "" {
			continue
		}
		keys, args := c.claimArgs(it.p)
		cmds[i] = claimScript.EvalSha(ctx, pipe, keys, args...)
	}
	if pipe.Len() > 0 {
		_, _ = pipe.Exec(ctx) // errors are read per command below
	}
	var claimErr error
	for i := range items {
		if cmds[i] == nil {
			continue
		}
		v, err := cmds[i].Text()
		switch {
		case errors.Is(err, redis.Nil):
			items[i].claimed = true
		case err != nil:
			if claimErr == nil {
				claimErr = err
			}
		default:
			items[i].isDup, items[i].dup = true, claimedID(v)
		}
	}
	if claimErr != nil {
		// Give back what this chunk did claim: nothing of it is enqueued.
		c.releaseClaimed(ctx, items)
		return c.chunkFailed(items, sum, fmt.Errorf("claim idempotency keys: %w", claimErr))
	}
	// Send the claimed and unkeyed lines concurrently.
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < batchSenders; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				it := &items[i]
				it.res, it.sendErr = c.send(ctx, it.kind, it.p, false)
			}
		}()
	}
	for i := range items {
		if items[i].err == nil && !items[i].isDup {
			work <- i
		}
	}
	close(work)
	wg.Wait()
	// One more round trip holds every enqueued key for the window.
	pipe = c.rdb.Pipeline()
	for i := range items {
		if it := &items[i]; it.claimed && it.sendErr == nil {
			keys, args := c.commitArgs(it.p)
			commitScript.EvalSha(ctx, pipe, keys, args...)
		}
	}
	if pipe.Len() > 0 {
		_, _ = pipe.Exec(context.WithoutCancel(ctx)) // see Client.commit: a failed commit only shortens the window
	}
	var firstErr error
	for i := range items {
		it := &items[i]
		switch {
		case it.err != nil:
			sum.Rejected = append(sum.Rejected, Rejection{Line: it.line, Error: it.err.Error()})
		case it.isDup:
			sum.Duplicates++
			sum.Results = append(sum.Results, BatchResult{Line: it.line, Result: Result{ID: it.dup, Kind: it.kind, Queue: it.p.queue, Duplicate: true, Key: it.p.key}})
		case it.sendErr != nil:
			if firstErr == nil {
				firstErr = fmt.Errorf("line %d: %w", it.line, it.sendErr)
			}
		default:
			if it.res.Duplicate {
				sum.Duplicates++
			} else {
				sum.Enqueued++
			}
			sum.Results = append(sum.Results, BatchResult{Line: it.line, Result: it.res})
		}
	}
	return firstErr
}

// releaseClaimed gives back the claims a failed chunk made.
func (c *Client) releaseClaimed(ctx context.Context, items []batchItem) {
	pipe := c.rdb.Pipeline()
	for i := range items {
		if it := &items[i]; it.claimed {
			keys, args := c.claimArgs(it.p)
			releaseScript.Eval(ctx, pipe, keys, args[:2]...)
		}
	}
	if pipe.Len() > 0 {
		_, _ = pipe.Exec(context.WithoutCancel(ctx))
	}
}

// chunkFailed records the chunk's rejections and returns err; nothing of the
// chunk was enqueued.
func (c *Client) chunkFailed(items []batchItem, sum *BatchSummary, err error) error {
	for _, it := range items {
		if it.err != nil {
			sum.Rejected = append(sum.Rejected, Rejection{Line: it.line, Error: it.err.Error()})
		}
	}
	return fmt.Errorf("line %d onwards not enqueued: %w", items[0].line, err)
}
