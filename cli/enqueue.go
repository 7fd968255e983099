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

	"github.com/schollz/progressbar/v3"
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
Exit codes: 0 all accepted, 1 runtime error, 2 bad input, 3 some batch lines rejected.`,
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
	fl.IntVar(&f.maxRetry, "max-retry", 0, "retries after the first attempt (default: the policy's max_attempts-1)")
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
		return usageError{err}
	}
	if err := rt.Ping(ctx); err != nil {
		return err
	}
	res, err := rt.Client().Enqueue(ctx, kind, payload, o)
	if err != nil {
		return err
	}
	if f.asJSON {
		return writeJSON(m.Stdout, res)
	}
	fmt.Fprintln(m.Stdout, res.ID)
	if res.Duplicate {
		fmt.Fprintf(m.Stderr, "duplicate: key %q was already enqueued in queue %q as task %s within the dedupe window; nothing new was enqueued\n", res.Key, res.Queue, res.ID)
	}
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
	size := int64(-1)
	if f.batch != "-" {
		file, err := os.Open(f.batch)
		if err != nil {
			return usagef("--batch: %v", err)
		}
		defer file.Close()
		if st, err := file.Stat(); err == nil {
			if st.IsDir() {
				return usagef("--batch %s: is a directory, not a file", f.batch)
			}
			size = st.Size()
		}
		r = file
	}
	if err := rt.Ping(ctx); err != nil {
		return err
	}
	c := rt.Client()
	var bar *progressbar.ProgressBar
	if logging.IsTerminal(m.Stderr) && !f.asJSON {
		bar = progressbar.NewOptions64(size,
			progressbar.OptionSetWriter(m.Stderr), progressbar.OptionSetDescription("enqueue"),
			progressbar.OptionShowBytes(true), progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish())
		pr := progressbar.NewReader(r, bar)
		r = &pr
	}
	sum, runErr := c.EnqueueBatch(ctx, r, nil)
	if bar != nil {
		_ = bar.Finish()
	}
	if f.asJSON {
		out := struct {
			queue.BatchSummary
			Error string `json:"error,omitempty"`
		}{BatchSummary: sum}
		if sum.Rejected == nil {
			out.Rejected = []queue.Rejection{}
		}
		if runErr != nil {
			out.Error = runErr.Error()
		}
		if err := writeJSON(m.Stdout, out); err != nil {
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
