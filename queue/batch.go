package queue

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/agentq/agentq/jobs"
)

// BatchChunk is how many lines a batch validates and then enqueues in one
// pipelined round trip.
const BatchChunk = 256

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
	// StoppedAt is the first line not done when an error or the context
	// stopped the batch; 0 when it ran to its end. Lines from it on may not
	// be enqueued (a later line of the same chunk may have been): resending
	// them is safe for keyed lines, which are deduplicated.
	StoppedAt int `json:"stopped_at,omitempty"`
	// NotDone counts the lines read that were neither enqueued, duplicates
	// nor rejected because the batch stopped: Lines is always Enqueued +
	// Duplicates + len(Rejected) + NotDone.
	NotDone int `json:"not_done"`
	// Results has one entry per enqueued or duplicate line, in line order.
	Results []BatchResult `json:"-"`
}

// BatchResult is the result of one accepted line.
type BatchResult struct {
	Line int `json:"line"`
	Result
}

// batchFields are the keys a batch line may have, spelled exactly: the JSON
// decoder matches field names without regard to case, which would let
// "Payload" and "payload" on one line both land in Payload.
var batchFields = map[string]bool{
	"kind": true, "payload": true, "key": true, "queue": true, "workflow": true, "run_id": true,
	"max_retry": true, "timeout": true, "in": true, "retry_base": true, "retry_max": true, "replay_of": true,
}

// ParseBatchLine decodes one JSONL line into a kind, payload and options.
// The line must be exactly one JSON object in valid UTF-8, with JSON
// whitespace (space, tab, CR, LF) around it at most, no repeated key at any
// depth, no nesting deeper than the payload allows (MaxPayloadDepth below the
// line's object) and only the known fields, spelled exactly: an unknown field
// is refused so that a typo does not silently drop a setting. Byte offsets in
// its errors count from the start of line.
func ParseBatchLine(line []byte) (kind string, payload []byte, o EnqueueOptions, err error) {
	lead := len(line) - len(trimLeftJSONSpace(line))
	text := trimJSONSpace(line)
	if err := checkBatchText(text, lead); err != nil {
		return "", nil, o, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(text, &fields); err != nil {
		return "", nil, o, fmt.Errorf("a batch line is one JSON object (a task), got %s", jsonKind(text))
	}
	for k := range fields {
		if !batchFields[k] {
			return "", nil, o, fmt.Errorf("unknown field %s (known: kind, payload, key, queue, workflow, run_id, max_retry, timeout, in, retry_base, retry_max, replay_of)", shorten(strconv.Quote(k)))
		}
	}
	var bl BatchLine
	if err := json.Unmarshal(text, &bl); err != nil {
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
		v, err := jobs.ParseDuration(d.in)
		if err != nil {
			return "", nil, o, fmt.Errorf("%q: %s is not a duration (e.g. 30s, 1d)", d.name, shorten(strconv.Quote(d.in)))
		}
		*d.out = v
	}
	return bl.Kind, bl.Payload, o, nil
}

// checkBatchText checks that text, found lead bytes into its line, is one
// JSON value in UTF-8 with no repeated key and no deeper nesting than a
// payload may have below the line's object.
func checkBatchText(text []byte, lead int) error {
	if len(text) == 0 {
		return errors.New("the line is blank")
	}
	if bytes.HasPrefix(text, []byte(UTF8BOM)) {
		return errors.New("the line starts with a UTF-8 byte order mark (BOM); only the first line of a file may")
	}
	if i := bytes.IndexByte(text, 0); i >= 0 {
		return fmt.Errorf("NUL byte at byte offset %d (a batch file is UTF-8 JSON Lines; UTF-16 and binary files are not)", lead+i)
	}
	if i := invalidUTF8(text); i >= 0 {
		return fmt.Errorf("invalid UTF-8 at byte offset %d (a batch file is UTF-8 JSON Lines)", lead+i)
	}
	if !json.Valid(text) {
		return batchSyntaxError(text, lead)
	}
	if p := checkStructure(text, MaxPayloadDepth+1); p != nil {
		if p.what == problemDepth {
			return fmt.Errorf("arrays and objects nest deeper than %d levels below the task object at byte offset %d", MaxPayloadDepth, lead+p.offset)
		}
		return p
	}
	return nil
}

// batchSyntaxError explains why text, which is not valid JSON, was refused:
// a second value after the first, other data after it, or a syntax error.
func batchSyntaxError(text []byte, lead int) error {
	dec := json.NewDecoder(bytes.NewReader(text))
	var first json.RawMessage
	if err := dec.Decode(&first); err != nil {
		var se *json.SyntaxError
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return errors.New("not a valid task line: the JSON ends before its value is complete (one task per line, not pretty-printed)")
		}
		if errors.As(err, &se) {
			return fmt.Errorf("not a valid task line: %v (at byte offset %d)", se, lead+int(se.Offset))
		}
		return fmt.Errorf("not a valid task line: %v", err)
	}
	end := int(dec.InputOffset())
	next := end + len(text[end:]) - len(trimLeftJSONSpace(text[end:]))
	var second json.RawMessage
	if err := dec.Decode(&second); err == nil {
		return fmt.Errorf("more than one JSON value on the line: the second starts at byte offset %d (a batch line is one task object; put each task on its own line)", lead+next)
	}
	return fmt.Errorf("trailing data after the JSON %s at byte offset %d", jsonKind(first), lead+next)
}

// jsonKind names the kind of JSON value text starts with.
func jsonKind(text []byte) string {
	if len(text) == 0 {
		return "nothing"
	}
	switch text[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// isJSONSpace reports whether c is whitespace in JSON.
func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func trimLeftJSONSpace(b []byte) []byte {
	for len(b) > 0 && isJSONSpace(b[0]) {
		b = b[1:]
	}
	return b
}

func trimJSONSpace(b []byte) []byte {
	b = trimLeftJSONSpace(b)
	for len(b) > 0 && isJSONSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// EnqueueBatch reads JSONL from r, one task a line, and enqueues every valid
// line. Lines are validated a chunk (BatchChunk lines) at a time and the
// chunk's enqueues sent in one pipelined round trip, in line order, each the
// same script as Enqueue: the results are those of enqueueing the lines one
// by one, and a key repeated in the batch is a duplicate of its first line.
// Invalid lines are rejected with their line numbers and do not
// stop the batch. A Redis error stops it, and so does ctx, also in the middle
// of an endless line: the summary then says exactly what was enqueued, and
// StoppedAt and the error name the first line not done.
// progress, if non-nil, is called after each chunk with the lines done.
func (c *Client) EnqueueBatch(ctx context.Context, r io.Reader, progress func(done int)) (sum BatchSummary, err error) {
	defer func() {
		if err == nil {
			return
		}
		sum.NotDone = sum.Lines - sum.Enqueued - sum.Duplicates - len(sum.Rejected)
		if ctxErr := ctx.Err(); ctxErr != nil {
			// A send cut short by ctx fails with an error of its own
			// ("redis eval error: context canceled"); say what happened.
			err = fmt.Errorf("interrupted at line %d: %w", sum.StoppedAt, ctxErr)
		}
	}()
	// Load the script once so the pipelined EVALSHAs find it.
	if err := enqueueScript.Load(ctx, c.rdb).Err(); err != nil {
		sum.StoppedAt = 1
		return sum, fmt.Errorf("load the enqueue script: %w", err)
	}
	lines := newBatchReader(r, c.cfg.MaxPayloadBytes)
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
		lineNo, raw, tooLong, readErr := lines.next(ctx)
		if readErr == io.EOF {
			break
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			// Interrupted: the lines held in chunk are not sent.
			return sum, c.interrupted(chunk, &sum, lines.lineNo+1, ctxErr)
		}
		if readErr != nil {
			if err := flush(); err != nil {
				return sum, err
			}
			sum.StoppedAt = lines.lineNo + 1
			return sum, fmt.Errorf("read batch after line %d: %w", lines.lineNo, readErr)
		}
		sum.Lines++
		it := batchItem{line: lineNo}
		if tooLong {
			it.err = fmt.Errorf("line is longer than %d bytes (enqueue.max_payload_bytes plus 64 KiB)", lines.max)
		} else {
			var (
				kind    string
				payload []byte
				o       EnqueueOptions
			)
			kind, payload, o, it.err = ParseBatchLine(raw)
			if it.err == nil {
				// ParseBatchLine checked the payload with its line.
				it.p, it.err = c.prepareChecked(kind, payload, o, true)
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
	return sum, flush()
}

// batchReader splits a batch into lines at LF, numbering them from 1, and
// skips blank ones (JSON whitespace only, so a CRLF file's lines are fine).
// A UTF-8 byte order mark at the start of the first line is dropped: some
// Windows tools write one.
type batchReader struct {
	br *bufio.Reader
	// max is the longest line read whole.
	max int
	// lineNo is the number of the last line read.
	lineNo int
	eof    bool
}

func newBatchReader(r io.Reader, maxPayloadBytes int) *batchReader {
	return &batchReader{br: bufio.NewReaderSize(r, 64<<10), max: maxPayloadBytes + 64<<10}
}

// next returns the next non-blank line without its LF, and its number. A
// line longer than max is consumed and returned empty with tooLong. At the
// end it returns io.EOF; a read error, or ctx's error once ctx is done,
// ends the batch and drops the line it interrupted.
func (b *batchReader) next(ctx context.Context) (lineNo int, line []byte, tooLong bool, err error) {
	for !b.eof {
		if err := ctx.Err(); err != nil {
			return 0, nil, false, err
		}
		raw, long, err := readLine(ctx, b.br, b.max)
		if err == io.EOF {
			b.eof = true
			if len(raw) == 0 && !long {
				break
			}
		} else if err != nil {
			return 0, nil, false, err
		}
		b.lineNo++
		if b.lineNo == 1 {
			raw = bytes.TrimPrefix(raw, []byte(UTF8BOM))
		}
		if long || len(trimJSONSpace(raw)) > 0 {
			return b.lineNo, raw, long, nil
		}
	}
	return 0, nil, false, io.EOF
}

// readLine reads one line without its newline. A line longer than max is
// consumed to its end and reported as tooLong, so that one bad line does
// not stop the batch; ctx is checked between fragments, so an endless line
// (/dev/zero) stops when ctx is done, with ctx's error.
func readLine(ctx context.Context, br *bufio.Reader, max int) (line []byte, tooLong bool, err error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, tooLong, err
		}
		frag, err := br.ReadSlice('\n')
		n := len(frag)
		if err == nil {
			n-- // the newline
		}
		if !tooLong {
			if len(line)+n > max {
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
	line int
	p    *prepared
	err  error
}

// runChunk sends the valid lines of items in one pipeline and records what
// each line did. The first line whose enqueue failed is StoppedAt; a later
// line of the chunk may have been enqueued all the same, and is counted.
func (c *Client) runChunk(ctx context.Context, items []batchItem, sum *BatchSummary) error {
	ps := make([]*prepared, 0, len(items))
	for _, it := range items {
		if it.err == nil {
			ps = append(ps, it.p)
		}
	}
	var (
		results []Result
		errs    []error
	)
	if len(ps) > 0 {
		results, errs = c.sendAll(ctx, ps)
	}
	var firstErr error
	k := 0
	for _, it := range items {
		if it.err != nil {
			sum.Rejected = append(sum.Rejected, Rejection{Line: it.line, Error: it.err.Error()})
			continue
		}
		res, err := results[k], errs[k]
		k++
		switch {
		case err != nil:
			if firstErr == nil {
				firstErr = fmt.Errorf("line %d: %w", it.line, err)
				sum.StoppedAt = it.line
			}
		default:
			if res.Duplicate {
				sum.Duplicates++
			} else {
				sum.Enqueued++
			}
			sum.Results = append(sum.Results, BatchResult{Line: it.line, Result: res})
		}
	}
	return firstErr
}

// interrupted ends a batch whose ctx is done: the lines held in chunk,
// nothing of which was sent, are not done, nor is line next, whose read ctx
// interrupted. It records the chunk's rejections and returns ctx's error,
// which EnqueueBatch wraps with the first line not done.
func (c *Client) interrupted(chunk []batchItem, sum *BatchSummary, next int, ctxErr error) error {
	for _, it := range chunk {
		if it.err != nil {
			sum.Rejected = append(sum.Rejected, Rejection{Line: it.line, Error: it.err.Error()})
		}
	}
	sum.StoppedAt = next
	if len(chunk) > 0 {
		sum.StoppedAt = chunk[0].line
	}
	return ctxErr
}
