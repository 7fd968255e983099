package cli

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/internal/logging"
	"github.com/agentq/agentq/queue"
)

type enqueueFlags struct {
	payload, batch, queue, workflow, runID, key string
	maxRetry                                    int
	timeout, in, retryBase, retryMax            time.Duration
	asJSON                                      bool
}

func (m *Main) enqueueCommand(rf *rootFlags) *cobra.Command {
	f := &enqueueFlags{}
	cmd := &cobra.Command{
		Use:   "enqueue KIND --payload JSON|@FILE|- [flags] | enqueue --batch FILE.jsonl|-",
		Short: "Validate and enqueue a task (or a JSONL batch)",
		Long: `Validate a payload against its kind and enqueue it. Bad input is refused before
anything reaches Redis. With --key, the task is enqueued at most once per key
within the dedupe window (enqueue.dedupe_window, default 24h); a duplicate is
reported with the id of the task it duplicates and exits 0.

A payload must be UTF-8 JSON with no key repeated within an object and at
most ` + strconv.Itoa(queue.MaxPayloadDepth) + ` levels of nested arrays and objects. --payload @FILE
and - read at most enqueue.max_payload_bytes; a leading UTF-8 BOM is dropped.

--batch reads one task per line, each line exactly one JSON object (UTF-8;
CRLF line ends and a BOM at the start of the file are fine):
  {"kind":"http.call","payload":{...},"key":"...","queue":"...","workflow":"...",
   "run_id":"...","max_retry":3,"timeout":"30s","in":"1m"}
With --json, a batch prints JSON Lines: one object per line done, in line
order ({"line":N,"status":"enqueued"|"duplicate","id":...} or
{"line":N,"status":"rejected","error":...}), then a summary object
({"summary":true,"lines":...,"enqueued":...,"rejected":[...],...}).

On a terminal, --batch shows a progress bar of tasks (rate, and time left
when reading a file). A task sent to a queue no live worker serves is
enqueued, with a warning on stderr ("warning"/"warnings" in --json).
Exit codes: 0 all accepted, 1 runtime error, 2 bad input, 3 some batch lines rejected.`,
		Example: `  # One task; prints its id.
  agentq enqueue http.call --payload '{"url":"https://example.com/hook","method":"POST"}'

  # Enqueued at most once per key within the dedupe window, to a queue.
  agentq enqueue http.call --key order-42 --queue critical --payload @task.json

  # Payload from stdin, 3 retries at most, first attempt in 5 minutes.
  echo '{"url":"https://example.com/"}' | agentq enqueue http.call --payload - --max-retry 3 --in 5m

  # A JSONL batch; --json prints one result per line, then a summary.
  agentq enqueue --batch tasks.jsonl --json | jq -c 'select(.status == "rejected")'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return m.runEnqueue(cmd, rf, f, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.payload, "payload", "", "JSON payload, @FILE, or - for stdin")
	fl.StringVar(&f.batch, "batch", "", "JSONL file (or -) with one task per line")
	fl.StringVar(&f.queue, "queue", "", "queue (default: the workflow's, else enqueue.queue)")
	fl.StringVar(&f.workflow, "workflow", "", "configured workflow the task belongs to")
	fl.StringVar(&f.runID, "run", "", "run id grouping the steps of one run")
	fl.StringVar(&f.key, "key", "", "idempotency key")
	fl.IntVar(&f.maxRetry, "max-retry", -1, "retries after the first attempt (default: the policy's max_attempts-1)")
	// -1 stands for "not given"; help says what that means instead.
	fl.Lookup("max-retry").DefValue = "0"
	fl.DurationVar(&f.timeout, "timeout", 0, "timeout of one attempt, e.g. 30s")
	fl.DurationVar(&f.in, "in", 0, "delay before the first attempt, e.g. 5m")
	fl.DurationVar(&f.retryBase, "retry-base", 0, "backoff base for this task")
	fl.DurationVar(&f.retryMax, "retry-max", 0, "backoff cap for this task")
	fl.BoolVar(&f.asJSON, "json", false, "print JSON")
	return cmd
}

func (m *Main) runEnqueue(cmd *cobra.Command, rf *rootFlags, f *enqueueFlags, args []string) error {
	if f.batch != "" {
		if len(args) > 0 || f.payload != "" {
			return usagef("--batch takes its kinds and payloads from the file: give no KIND and no --payload")
		}
		for _, name := range []string{"key", "queue", "workflow", "run", "max-retry", "timeout", "in", "retry-base", "retry-max"} {
			if cmd.Flags().Changed(name) {
				return usagef("--%s does not apply to --batch: set it per line", name)
			}
		}
	} else {
		if len(args) != 1 {
			return usagef("enqueue needs exactly one KIND (or --batch FILE), got %d arguments", len(args))
		}
		if !cmd.Flags().Changed("payload") {
			return usagef("--payload is required (JSON, @FILE or -)")
		}
	}
	if cmd.Flags().Changed("max-retry") && f.maxRetry < 0 {
		return usagef("--max-retry must not be negative, got %d", f.maxRetry)
	}
	rt, err := m.open(cmd, rf, false)
	if err != nil {
		return err
	}
	defer rt.Close()
	ctx := cmd.Context()
	if f.batch != "" {
		return m.enqueueBatch(ctx, rt, f)
	}
	payload, err := m.readPayloadMax(f.payload, cmp.Or(rt.Config().Enqueue.MaxPayloadBytes, queue.MaxPayloadBytesDefault))
	if err != nil {
		return err
	}
	kind := args[0]
	o := queue.EnqueueOptions{
		Queue: f.queue, Workflow: f.workflow, RunID: f.runID, Key: f.key,
		Timeout: f.timeout, In: f.in, RetryBase: f.retryBase, RetryMax: f.retryMax,
	}
	if cmd.Flags().Changed("max-retry") {
		o.MaxAttempts = f.maxRetry + 1
	}
	// Validate before connecting, so bad input is refused even when Redis
	// is down, and nothing is half-written.
	if err := rt.Check(kind, payload, o); err != nil {
		noWF := o
		noWF.Workflow = ""
		if _, ok := rt.Config().Workflows[f.workflow]; f.workflow != "" && !ok && rt.Check(kind, payload, noWF) == nil {
			return usageError{notFoundError{err}} // only the workflow is wrong: not_found, as in run start
		}
		return usageError{err}
	}
	if err := rt.Ping(ctx); err != nil {
		return err
	}
	res, err := rt.Client().Enqueue(ctx, kind, payload, o)
	if err != nil {
		return err
	}
	if res.Duplicate && !f.asJSON {
		fmt.Fprintf(m.Stderr, "duplicate: key %q was already enqueued in queue %q as task %s within the dedupe window; nothing new was enqueued\n", res.Key, res.Queue, res.ID)
	}
	warnings := m.unservedWarnings(ctx, rt, []string{res.Queue})
	if f.asJSON {
		out := struct {
			queue.Result
			Warning string `json:"warning,omitempty"`
		}{Result: res}
		if len(warnings) > 0 {
			out.Warning = warnings[0]
		}
		return writeJSON(m.Stdout, out)
	}
	fmt.Fprintln(m.Stdout, res.ID)
	return nil
}

// maxReplayPayloadRead bounds what --payload reads for a replay, which
// runs before the configuration is loaded; the enqueue then applies
// enqueue.max_payload_bytes.
const maxReplayPayloadRead = 64 << 20

func (m *Main) readPayload(spec string) ([]byte, error) {
	return m.readPayloadMax(spec, maxReplayPayloadRead)
}

// readPayloadMax reads --payload: the JSON itself, @FILE or - for stdin.
// From a file or stdin it reads at most max+1 bytes, so that /dev/zero or
// a huge file is refused without being read, refuses a directory, and drops
// a leading UTF-8 byte order mark (a file's encoding, not its content).
func (m *Main) readPayloadMax(spec string, max int) ([]byte, error) {
	var r io.Reader
	switch {
	case spec == "-":
		r = m.Stdin
	case strings.HasPrefix(spec, "@"):
		f, err := os.Open(spec[1:])
		if err != nil {
			return nil, usagef("--payload %s: %v", spec, err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.IsDir() {
			return nil, usagef("--payload %s: is a directory, not a file", spec)
		}
		r = f
	default:
		return []byte(spec), nil
	}
	b, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	switch {
	case err != nil && spec == "-":
		return nil, fmt.Errorf("read payload from stdin: %w", err)
	case err != nil:
		return nil, usagef("--payload %s: %v", spec, err)
	case len(b) > max:
		return nil, usagef("--payload %s: over the limit of %d bytes (enqueue.max_payload_bytes); stopped reading after %d", spec, max, len(b))
	}
	return bytes.TrimPrefix(b, []byte(queue.UTF8BOM)), nil
}

func (m *Main) enqueueBatch(ctx context.Context, rt *agentq.Runtime, f *enqueueFlags) error {
	var r io.Reader = m.Stdin
	if f.batch != "-" {
		file, err := os.Open(f.batch)
		if err != nil {
			return usagef("--batch: %v", err)
		}
		defer file.Close()
		if st, err := file.Stat(); err == nil && st.IsDir() {
			return usagef("--batch %s: is a directory, not a file", f.batch)
		}
		r = file
	}
	if err := rt.Ping(ctx); err != nil {
		return err
	}
	bar := itemBar(m.Stderr, logging.IsTerminal(m.Stderr), batchTotal(r), "enqueue", "tasks")
	var progress func(int)
	if bar != nil {
		progress = func(done int) { _ = bar.Set(done) }
	}
	sum, runErr := rt.Client().EnqueueBatch(ctx, r, progress)
	if bar != nil {
		_ = bar.Finish()
	}
	warnings := m.unservedWarnings(ctx, rt, batchQueues(sum))
	if f.asJSON {
		if err := writeBatchJSON(m.Stdout, sum, runErr, warnings); err != nil {
			return err
		}
	} else {
		fmt.Fprint(m.Stdout, batchSummaryText(ctx, sum))
	}
	switch {
	case runErr != nil:
		return runErr
	case len(sum.Rejected) > 0:
		return partialError{rejectedText(sum)}
	}
	return nil
}

// batchTotal is the number of tasks the batch in r holds when r is a
// regular file (--batch FILE, or stdin redirected from one): its lines are
// counted first, then r is rewound. Otherwise (a pipe, a terminal) it is
// -1: unknown.
func batchTotal(r io.Reader) int64 {
	file, ok := r.(*os.File)
	if !ok {
		return -1
	}
	st, err := file.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return -1
	}
	start, err := file.Seek(0, io.SeekCurrent)
	if err != nil {
		return -1
	}
	n, err := countBatchLines(file)
	if _, serr := file.Seek(start, io.SeekStart); serr != nil {
		// Unreachable for a regular file; the batch would be read short.
		panic(fmt.Sprintf("rewind %s: %v", file.Name(), serr))
	}
	if err != nil {
		return -1
	}
	return n
}

// batchQueues are the distinct queues a batch's accepted lines went to.
func batchQueues(sum queue.BatchSummary) []string {
	var qs []string
	seen := map[string]bool{}
	for _, r := range sum.Results {
		if !seen[r.Queue] {
			seen[r.Queue] = true
			qs = append(qs, r.Queue)
		}
	}
	return qs
}

// batchLineJSON is what enqueue --batch --json prints for one line.
type batchLineJSON struct {
	Line int `json:"line"`
	// Status is enqueued, duplicate or rejected.
	Status string `json:"status"`
	ID     string `json:"id,omitempty"`
	Kind   string `json:"kind,omitempty"`
	Queue  string `json:"queue,omitempty"`
	Key    string `json:"key,omitempty"`
	Error  string `json:"error,omitempty"`
}

// writeBatchJSON prints a batch as JSON Lines: one object per line done,
// in line order, then the summary ("summary": true), which carries the
// counts, the rejections again, where the batch stopped (lines from
// stopped_at on have no object of their own), its error and the warnings.
func writeBatchJSON(w io.Writer, sum queue.BatchSummary, runErr error, warnings []string) error {
	enc := json.NewEncoder(w)
	rs, rj := sum.Results, sum.Rejected
	for len(rs) > 0 || len(rj) > 0 {
		var l batchLineJSON
		if len(rj) == 0 || (len(rs) > 0 && rs[0].Line < rj[0].Line) {
			r := rs[0]
			rs = rs[1:]
			l = batchLineJSON{Line: r.Line, Status: "enqueued", ID: r.ID, Kind: r.Kind, Queue: r.Queue, Key: r.Key}
			if r.Duplicate {
				l.Status = "duplicate"
			}
		} else {
			l = batchLineJSON{Line: rj[0].Line, Status: "rejected", Error: rj[0].Error}
			rj = rj[1:]
		}
		if err := enc.Encode(l); err != nil {
			return err
		}
	}
	out := struct {
		Summary bool `json:"summary"`
		queue.BatchSummary
		Error    string   `json:"error,omitempty"`
		Warnings []string `json:"warnings,omitempty"`
	}{Summary: true, BatchSummary: sum, Warnings: warnings}
	if sum.Rejected == nil {
		out.Rejected = []queue.Rejection{}
	}
	if runErr != nil {
		out.Error = runErr.Error()
	}
	return enc.Encode(out)
}

// batchSummaryText is the text summary of a batch: the counts, each
// rejected line, and where the batch stopped, if it did.
func batchSummaryText(ctx context.Context, sum queue.BatchSummary) string {
	var b strings.Builder
	fmt.Fprintf(&b, "lines: %d  enqueued: %d  duplicates: %d  rejected: %d", sum.Lines, sum.Enqueued, sum.Duplicates, len(sum.Rejected))
	if sum.StoppedAt > 0 {
		fmt.Fprintf(&b, "  not done: %d", sum.NotDone)
	}
	b.WriteString("\n")
	for _, rj := range sum.Rejected {
		fmt.Fprintf(&b, "  line %d: %s\n", rj.Line, rj.Error)
	}
	if sum.StoppedAt > 0 {
		what := "stopped"
		if ctx.Err() != nil {
			what = "interrupted"
		}
		fmt.Fprintf(&b, "%s at line %d: lines from %d on may not be enqueued; resend them (keyed lines are deduplicated)\n", what, sum.StoppedAt, sum.StoppedAt)
	}
	return b.String()
}

// rejectedText is the error of a batch that ran to its end with rejected lines.
func rejectedText(sum queue.BatchSummary) string {
	n := len(sum.Rejected)
	switch {
	case n == 1 && sum.Lines == 1:
		return "the batch's only line was rejected (see above); nothing was enqueued"
	case n == sum.Lines:
		return fmt.Sprintf("all %d lines rejected (see above); nothing was enqueued", n)
	case sum.Enqueued == 0:
		return fmt.Sprintf("%d of %d lines rejected (see above); the others were duplicates of tasks already enqueued", n, sum.Lines)
	case sum.Duplicates > 0:
		return fmt.Sprintf("%d of %d lines rejected (see above); the others were enqueued or duplicates", n, sum.Lines)
	}
	return fmt.Sprintf("%d of %d lines rejected (see above); the others were enqueued", n, sum.Lines)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
