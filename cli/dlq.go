package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/dlq"
	"github.com/agentq/agentq/internal/logging"
	"github.com/agentq/agentq/redact"
)

// dlqSession is one dlq command's connection and store.
type dlqSession struct {
	rt     *agentq.Runtime
	store  *dlq.Store
	redact *redact.Redactor
}

func (m *Main) openDLQ(cmd *cobra.Command, rf *rootFlags) (*dlqSession, error) {
	rt, err := m.openRedis(cmd, rf, true)
	if err != nil {
		return nil, err
	}
	s := &dlqSession{rt: rt, store: rt.DeadLetters(), redact: rt.OutputRedactor()}
	// Reflect asynqmon actions and archived tasks no worker reported before
	// answering, also when no worker is running.
	if _, err := s.store.Sweep(cmd.Context()); err != nil {
		fmt.Fprintf(m.Stderr, "agentq: warning: could not reconcile with asynq first: %v\n", err)
	}
	return s, nil
}

func (s *dlqSession) close() { _ = s.rt.Close() }

// selectors are the flags that select dead letters.
type selectors struct {
	queue, workflow, run, kind, errText, class, status, since string
	limit                                                     int
	all                                                       bool
}

var selectorFlags = []string{"queue", "workflow", "run", "kind", "error", "class", "since", "status"}

func (f *selectors) register(cmd *cobra.Command, allHelp string, limitDefault int) {
	withAll := allHelp != ""
	fl := cmd.Flags()
	fl.StringVar(&f.queue, "queue", "", "only this queue")
	fl.StringVar(&f.workflow, "workflow", "", "only this workflow")
	fl.StringVar(&f.run, "run", "", "only the dead letters of this run id")
	fl.StringVar(&f.kind, "kind", "", "only this task kind, e.g. http.call")
	fl.StringVar(&f.errText, "error", "", "only records whose last error contains TEXT (case-insensitive)")
	fl.StringVar(&f.class, "class", "", "only this error class: "+classNames())
	fl.StringVar(&f.since, "since", "", sinceHelp("only records whose last failure is"))
	fl.StringVar(&f.status, "status", "", "only these statuses, comma-separated: dead, replayed, resolved, rerun, deleted")
	fl.IntVar(&f.limit, "limit", limitDefault, "at most N records (0: no limit)")
	if withAll {
		fl.BoolVar(&f.all, "all", false, allHelp)
	}
}

func classNames() string {
	names := make([]string, len(dlq.Classes))
	for i, c := range dlq.Classes {
		names[i] = string(c)
	}
	return strings.Join(names, ", ")
}

// given reports whether any selector flag was set.
func (f *selectors) given(cmd *cobra.Command) bool {
	for _, name := range selectorFlags {
		if cmd.Flags().Changed(name) {
			return true
		}
	}
	return false
}

func (f *selectors) filter(now time.Time) (dlq.Filter, error) {
	flt := dlq.Filter{Queue: f.queue, Workflow: f.workflow, RunID: f.run, Kind: f.kind, Error: f.errText, Limit: f.limit}
	if f.class != "" {
		c, err := dlq.ParseClass(f.class)
		if err != nil {
			return flt, usagef("--class: %v", err)
		}
		flt.Class = c
	}
	if f.status != "" {
		for _, part := range strings.Split(f.status, ",") {
			st, err := dlq.ParseStatus(part)
			if err != nil {
				return flt, usagef("--status: %v", err)
			}
			flt.Statuses = append(flt.Statuses, st)
		}
	}
	if f.since != "" {
		since, err := parseSince(f.since, now)
		if err != nil {
			return flt, err
		}
		flt.Since = since
	}
	if f.limit < 0 {
		return flt, usagef("--limit must not be negative, got %d", f.limit)
	}
	return flt, nil
}

func (m *Main) dlqCommand(rf *rootFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Triage, replay and purge dead letters",
		Example: `  agentq dlq stats
  agentq dlq list --workflow research --since 3d
  agentq dlq replay --run run-42 --dry-run`,
		Long: `Every task that ends without success has a record in agentq's dead-letter
store: retries spent, permanent errors, panics, timeouts, lease expiry after a
worker crash and tasks archived by hand in asynqmon. Records keep the payload,
headers and every attempt's error (secrets redacted); nothing is dropped unless
a retention is configured, and then every drop is logged and counted.

A record moves dead -> replayed -> resolved, or back to dead with the replay's
attempts appended. rerun and deleted mirror asynqmon actions on the archived
task (run, delete). Each command first reconciles the store with asynq.

Exit codes: 0 done, 1 runtime error, 2 bad input (unknown id, empty
selection, conflicting flags, refused payload), 3 some replays failed.`,
	}
	cmd.AddCommand(m.dlqListCommand(rf), m.dlqShowCommand(rf), m.dlqStatsCommand(rf),
		m.dlqReplayCommand(rf), m.dlqPurgeCommand(rf))
	return cmd
}

// present returns r with its payload and headers redacted for output.
func (s *dlqSession) present(r dlq.Record) dlq.Record {
	if len(r.Payload) > 0 {
		if red, ok := s.redact.JSON(r.Payload); ok {
			r.Payload = red
		} else {
			b, _ := json.Marshal(s.redact.Text(string(r.Payload)))
			r.Payload = b
		}
	}
	if r.Headers != nil {
		h := make(map[string]string, len(r.Headers))
		for k, v := range r.Headers {
			h[k] = s.redact.Header(k, v)
		}
		r.Headers = h
	}
	return r
}

func (m *Main) dlqListCommand(rf *rootFlags) *cobra.Command {
	var (
		sel    selectors
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list [--queue Q] [--workflow W] [--run RUN] [--kind K] [--error TEXT] [--class C] [--since DUR] [--status S] [--limit N] [--json]",
		Short: "List dead letters, newest failure first",
		Example: `  agentq dlq list
  agentq dlq list --queue critical --class rate_limited --since 1d12h
  agentq dlq list --run run-42 --json
  agentq dlq list --error "503" --status dead,deleted --limit 0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flt, err := sel.filter(time.Now())
			if err != nil {
				return err
			}
			s, err := m.openDLQ(cmd, rf)
			if err != nil {
				return err
			}
			defer s.close()
			recs := []dlq.Record{}
			err = s.store.Each(cmd.Context(), flt, func(r dlq.Record) bool {
				recs = append(recs, s.present(r))
				return true
			})
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(m.Stdout, recs)
			}
			if len(recs) == 0 {
				fmt.Fprintln(m.Stdout, "no dead letters match")
				return nil
			}
			tw := tabwriter.NewWriter(m.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATUS\tQUEUE\tKIND\tWORKFLOW\tRUN\tSTEP\tCLASS\tATTEMPTS\tFAILED\tERROR")
			for _, r := range recs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, r.Status, printable(r.Queue), printable(r.Kind),
					printable(dash(r.Workflow)), printable(dash(r.RunID)), printable(dash(r.Step)), r.Class, r.Attempts, ago(r.FailedAt), clip(r.Error, 60))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if flt.Limit > 0 && len(recs) == flt.Limit {
				fmt.Fprintf(m.Stderr, "showing the first %d; --limit 0 lists all\n", flt.Limit)
			}
			return nil
		},
	}
	sel.register(cmd, "", 100)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func clip(s string, n int) string {
	s = printable(strings.Join(strings.Fields(s), " "))
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// printable escapes the control characters of s (\n, \t, \x1b...) as Go
// does in quoted strings, so that a record's text, which may quote a tool's
// answer, can neither break the table nor drive the terminal.
func printable(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

// maxShownValue bounds how much of a bad argument an error quotes.
const maxShownValue = 64

// shortQuote quotes s for an error message, cut to maxShownValue bytes.
func shortQuote(s string) string {
	if len(s) <= maxShownValue {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q...", s[:maxShownValue])
}

// checkID refuses, without asking Redis, an argument that cannot be a
// dead-letter id: ids are the positive decimal numbers the store counts
// out (1, 2, ...), written without leading zeros or signs.
func checkID(id string) error {
	n, err := strconv.ParseUint(id, 10, 63)
	if err != nil || n == 0 || strconv.FormatUint(n, 10) != id {
		return notFoundf("no dead letter with id %s: ids are the numbers dlq list shows, e.g. 42", shortQuote(id))
	}
	return nil
}

// checkReplayRate is dlq's own check of a replay rate (ReplayMany makes
// it too), as a usage error naming --rate, made before Redis is dialed.
func checkReplayRate(rate float64) error {
	if err := dlq.CheckReplayRate(rate); err != nil {
		return usagef("--%w", err) // dlq's error begins "rate must be ..."
	}
	return nil
}

// checkIDs refuses unknown ids before anything changes.
func (s *dlqSession) checkIDs(ctx context.Context, ids []string) error {
	ok, err := s.store.Exists(ctx, ids)
	if err != nil {
		return err
	}
	for i, id := range ids {
		if !ok[i] {
			return usageError{&dlq.NotFoundError{ID: id}}
		}
	}
	return nil
}

func (m *Main) dlqShowCommand(rf *rootFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show ID [--json]",
		Short: "Show one dead letter with every attempt",
		Example: `  agentq dlq show 42
  agentq dlq show 42 --json | jq .history`,
		Args: oneArg("a dead-letter id", "dlq list"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkID(args[0]); err != nil {
				return err
			}
			s, err := m.openDLQ(cmd, rf)
			if err != nil {
				return err
			}
			defer s.close()
			r, err := s.store.Get(cmd.Context(), args[0])
			if errors.Is(err, dlq.ErrNotFound) {
				return usageError{err}
			}
			if err != nil {
				return err
			}
			r = s.present(r)
			if asJSON {
				return writeJSON(m.Stdout, r)
			}
			return writeRecord(m.Stdout, r, s.store.ReplayCommand(r.ID))
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func writeRecord(w io.Writer, r dlq.Record, replay string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, printable(v))
		}
	}
	row("id", r.ID)
	row("status", string(r.Status))
	row("note", r.Note)
	row("task", r.TaskID)
	row("archived task", r.ArchivedTask)
	row("queue", r.Queue)
	row("kind", r.Kind)
	row("workflow", r.Workflow)
	row("run id", r.RunID)
	row("step", r.Step)
	row("key", r.Key)
	row("class", string(r.Class))
	row("error", r.Error)
	row("attempts", fmt.Sprintf("%d (budget %d per task)", r.Attempts, r.MaxAttempts))
	row("first failed", r.FirstFailedAt.Format(time.RFC3339))
	row("last failed", r.FailedAt.Format(time.RFC3339))
	if r.Replays > 0 {
		row("replays", fmt.Sprintf("%d (last: task %s)", r.Replays, r.ReplayTask))
	}
	row("replay of", r.ReplayOf)
	row("recorded by", r.Source)
	row("payload", string(r.Payload))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nattempts:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\tAT\tTASK\tCLASS\tERROR")
	for _, a := range r.History {
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\n", a.Attempt, a.At.Format(time.RFC3339), printable(a.TaskID), a.Class, printable(a.Error))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.Status.Replayable() {
		fmt.Fprintf(w, "\nreplay: %s\n", replay)
	}
	return nil
}

func (m *Main) dlqStatsCommand(rf *rootFlags) *cobra.Command {
	var (
		sel    selectors
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "stats [selectors] [--json]",
		Short: "Count dead letters by status, queue, workflow, kind and class; name the oldest",
		Example: `  agentq dlq stats
  agentq dlq stats --since 7d --json
  agentq dlq stats --workflow research --run run-42`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flt, err := sel.filter(time.Now())
			if err != nil {
				return err
			}
			s, err := m.openDLQ(cmd, rf)
			if err != nil {
				return err
			}
			defer s.close()
			st, err := s.store.Stats(cmd.Context(), flt)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(m.Stdout, st)
			}
			fmt.Fprintf(m.Stdout, "total: %d\n", st.Total)
			for _, sec := range []struct {
				name string
				m    map[string]int
			}{{"status", st.ByStatus}, {"queue", st.ByQueue}, {"workflow", st.ByWorkflow}, {"kind", st.ByKind}, {"class", st.ByClass}} {
				if len(sec.m) == 0 {
					continue
				}
				fmt.Fprintf(m.Stdout, "by %s:\n", sec.name)
				for _, k := range dlq.SortedCounts(sec.m) {
					fmt.Fprintf(m.Stdout, "  %-24s %d\n", dash(k), sec.m[k])
				}
			}
			if st.Oldest != nil {
				fmt.Fprintf(m.Stdout, "oldest waiting: %s, first failed %s (%s ago)\n", st.Oldest.ID,
					st.Oldest.FirstFailedAt.Format(time.RFC3339), st.Oldest.Age)
			}
			return nil
		},
	}
	sel.register(cmd, "", 0)
	_ = cmd.Flags().MarkHidden("limit")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// targets resolves IDs or selectors or --all into record ids, refusing
// conflicting flags and unknown ids. An empty selection is no error: it
// returns no ids, and the command says that nothing matched.
func (s *dlqSession) targets(ctx context.Context, cmd *cobra.Command, sel *selectors, ids []string, defaultStatuses []dlq.Status) ([]string, error) {
	if len(ids) > 0 {
		if err := s.checkIDs(ctx, ids); err != nil {
			return nil, err
		}
		return slices.Compact(ids), nil
	}
	flt, err := sel.filter(time.Now())
	if err != nil {
		return nil, err
	}
	if len(flt.Statuses) == 0 {
		flt.Statuses = defaultStatuses
	}
	var out []string
	err = s.store.Each(ctx, flt, func(r dlq.Record) bool { out = append(out, r.ID); return true })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// checkSelection refuses a command with no ids, selectors or --all, and
// mixes of them.
func checkSelection(cmd *cobra.Command, sel *selectors, ids []string) error {
	given := sel.given(cmd)
	for _, id := range ids {
		if err := checkID(id); err != nil {
			return err
		}
	}
	switch {
	case len(ids) > 0 && (given || sel.all):
		return usagef("give IDs or selectors (--queue, --kind, ...) or --all, not both")
	case sel.all && given:
		return usagef("--all selects every record: drop --all or the selectors")
	case len(ids) == 0 && !given && !sel.all:
		return usagef("say which dead letters: IDs, selectors (--queue, --workflow, --run, --kind, --error, --class, --since, --status) or --all")
	case len(ids) > 0 && cmd.Flags().Changed("limit"):
		return usagef("--limit applies to selectors, not to IDs")
	}
	return nil
}

type replayFlags struct {
	sel     selectors
	payload string
	dryRun  bool
	rate    float64
	asJSON  bool
}

// replaySummary is what replay prints with --json.
type replaySummary struct {
	DryRun   bool           `json:"dry_run"`
	Selected int            `json:"selected"`
	Replayed []dlq.Replayed `json:"replayed"`
	Failed   []replayFail   `json:"failed"`
}

type replayFail struct {
	ID    string `json:"id"`
	Error string `json:"error"`
}

func (m *Main) dlqReplayCommand(rf *rootFlags) *cobra.Command {
	f := &replayFlags{}
	cmd := &cobra.Command{
		Use:   "replay ID... | replay [selectors] | replay --all  [--payload JSON|@FILE] [--dry-run] [--rate N] [--json]",
		Short: "Enqueue dead letters afresh with their full retry budget",
		Example: `  agentq dlq replay 42
  agentq dlq replay 42 --payload @fixed.json
  agentq dlq replay --workflow research --since 1d --dry-run
  agentq dlq replay --run run-42 --rate 5
  agentq dlq replay --all --json`,
		Long: `Replay enqueues each selected dead letter as a new task <task id>-r<N> in its
queue, with the same idempotency key, the full retry budget and lineage
(replay_of), then deletes the archived original from asynq. The record becomes
replayed, then resolved when the replay succeeds or dead again with the new
attempts appended. Replaying one record twice at once enqueues one task.

With selectors or --all, only dead records are taken
unless --status says otherwise. --payload replaces the payload of exactly one
ID and is validated like any enqueue. --dry-run lists what would be replayed
and changes nothing. --rate bounds replays per second (default: as fast as
Redis allows). Selectors or --all that match nothing replay nothing and
exit 0; an ID that names nothing is an error (exit 2).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return m.runReplay(cmd, rf, f, args)
		},
	}
	f.sel.register(cmd, "replay every dead record (with --status: every record in those statuses)", 0)
	fl := cmd.Flags()
	fl.StringVar(&f.payload, "payload", "", "replacement payload for exactly one ID: JSON, @FILE or -")
	fl.BoolVar(&f.dryRun, "dry-run", false, "show what would be replayed; change nothing")
	fl.Float64Var(&f.rate, "rate", 0, "at most N replays per second (0: no limit)")
	fl.BoolVar(&f.asJSON, "json", false, "print a JSON summary")
	return cmd
}

func (m *Main) runReplay(cmd *cobra.Command, rf *rootFlags, f *replayFlags, ids []string) error {
	if err := checkSelection(cmd, &f.sel, ids); err != nil {
		return err
	}
	var payload []byte
	if cmd.Flags().Changed("payload") {
		if len(ids) != 1 {
			return usagef("--payload replaces the payload of exactly one ID; got %d IDs", len(ids))
		}
		var err error
		if payload, err = m.readPayload(f.payload); err != nil {
			return err
		}
		if bytes.Contains(payload, []byte(redact.Mask)) {
			return usagef("--payload contains %s, a secret masked by dlq show/list: put the real value back", redact.Mask)
		}
		if len(bytes.TrimSpace(payload)) == 0 {
			return usagef("--payload is empty")
		}
	}
	if err := checkReplayRate(f.rate); err != nil {
		return err
	}
	if _, err := f.sel.filter(time.Now()); err != nil {
		return err
	}
	s, err := m.openDLQ(cmd, rf)
	if err != nil {
		return err
	}
	defer s.close()
	ctx := cmd.Context()
	// deleted records may have been run from asynqmon and finished before
	// the reconciler saw it: bulk replay leaves them out unless --status
	// asks; an explicit id still replays one.
	targets, err := s.targets(ctx, cmd, &f.sel, ids, []dlq.Status{dlq.StatusDead})
	if err != nil {
		return err
	}
	// Explicit IDs are checked up front, so that a typo or a settled record
	// changes nothing.
	if len(ids) > 0 {
		for _, id := range targets {
			r, err := s.store.Get(ctx, id)
			if err != nil {
				return err
			}
			if !r.Status.Replayable() {
				return usageError{&dlq.NotReplayableError{ID: id, Status: r.Status, ReplayTask: r.ReplayTask}}
			}
		}
	}
	if len(targets) == 0 {
		// Nothing matched: not bad input (a nightly replay finds nothing
		// most nights); exit 0 with zero counts.
		if f.asJSON {
			return writeJSON(m.Stdout, replaySummary{DryRun: f.dryRun, Replayed: []dlq.Replayed{}, Failed: []replayFail{}})
		}
		fmt.Fprintln(m.Stdout, "no dead letters match the selection; nothing replayed")
		return nil
	}
	sum := m.replayAll(ctx, s, targets, dlq.ReplayOptions{Payload: payload, DryRun: f.dryRun}, f)
	if f.asJSON {
		if err := writeJSON(m.Stdout, sum); err != nil {
			return err
		}
	} else {
		for _, r := range sum.Replayed {
			switch {
			case r.DryRun:
				fmt.Fprintf(m.Stdout, "would replay %s as task %s (%s, queue %s)\n", r.ID, r.TaskID, r.Kind, r.Queue)
			case len(sum.Replayed) <= 20:
				fmt.Fprintf(m.Stdout, "replayed %s as task %s\n", r.ID, r.TaskID)
			}
			if r.Warning != "" {
				fmt.Fprintf(m.Stderr, "warning: %s: %s\n", r.ID, r.Warning)
			}
		}
		// A lone failure is the command's error, printed once by Run.
		if len(sum.Failed) > 1 || len(sum.Replayed) > 0 {
			for _, fl := range sum.Failed {
				fmt.Fprintf(m.Stderr, "failed %s: %s\n", fl.ID, fl.Error)
			}
		}
		verb := "replayed"
		if f.dryRun {
			verb = "would replay"
		}
		fmt.Fprintf(m.Stdout, "selected: %d  %s: %d  failed: %d\n", sum.Selected, verb, len(sum.Replayed), len(sum.Failed))
	}
	switch {
	case len(sum.Failed) == 0:
		return nil
	case len(sum.Replayed) > 0:
		return partialError{fmt.Sprintf("%d of %d replays failed (see above)", len(sum.Failed), sum.Selected)}
	case len(sum.Failed) == 1:
		// One failure: its own error, with its own exit code.
		return sum.firstErr
	}
	return fmt.Errorf("all %d replays failed (see above)", len(sum.Failed))
}

type replayResult struct {
	replaySummary
	firstErr error
}

// replayAll replays ids with dlq's ReplayMany (a few in flight, at most
// --rate per second when set); a bar shows progress on a terminal.
func (m *Main) replayAll(ctx context.Context, s *dlqSession, ids []string, o dlq.ReplayOptions, f *replayFlags) replayResult {
	res := replayResult{replaySummary: replaySummary{DryRun: o.DryRun, Selected: len(ids), Replayed: []dlq.Replayed{}, Failed: []replayFail{}}}
	bar := itemBar(m.Stderr, len(ids) > 1 && !f.asJSON && logging.IsTerminal(m.Stderr), int64(len(ids)), "replay", "records")
	var progress func()
	if bar != nil {
		progress = func() { _ = bar.Add(1) }
	}
	outcomes, err := s.store.ReplayMany(ctx, ids, o, dlq.ReplayManyOptions{Rate: f.rate, Progress: progress})
	if bar != nil {
		_ = bar.Finish()
	}
	if err != nil {
		res.Failed = append(res.Failed, replayFail{Error: err.Error()})
		res.firstErr = usageError{err}
		return res
	}
	for _, oc := range outcomes {
		if oc.Err == nil {
			res.Replayed = append(res.Replayed, oc.Replayed)
			continue
		}
		res.Failed = append(res.Failed, replayFail{ID: oc.ID, Error: oc.Err.Error()})
		if res.firstErr == nil {
			res.firstErr = oc.Err
			var ie *dlq.InvalidReplayError
			if errors.As(oc.Err, &ie) || errors.Is(oc.Err, dlq.ErrNotFound) {
				res.firstErr = usageError{oc.Err}
			}
		}
	}
	return res
}

func (m *Main) dlqPurgeCommand(rf *rootFlags) *cobra.Command {
	var (
		sel    selectors
		yes    bool
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "purge ID... | purge [selectors] | purge --all  [--yes] [--json]",
		Short: "Delete dead letters for good (and their archived tasks in asynq)",
		Example: `  agentq dlq purge 42
  agentq dlq purge --status resolved --since 30d --yes
  agentq dlq purge --all --yes --json`,
		Long: `Purge deletes the selected records and their history, and deletes the archived
task of those still dead from asynq's archive, so asynqmon agrees. It asks for
--yes when more than one record is selected. Selectors or --all that match
nothing purge nothing and exit 0 (a nightly purge is safe in cron); an ID
that names nothing is an error (exit 2).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkSelection(cmd, &sel, args); err != nil {
				return err
			}
			if _, err := sel.filter(time.Now()); err != nil {
				return err
			}
			s, err := m.openDLQ(cmd, rf)
			if err != nil {
				return err
			}
			defer s.close()
			ctx := cmd.Context()
			ids, err := s.targets(ctx, cmd, &sel, args, nil)
			if err != nil {
				return err
			}
			if len(ids) == 0 {
				// Nothing matched: not bad input (the nightly purge of old
				// records finds nothing most nights); exit 0.
				if asJSON {
					return writeJSON(m.Stdout, map[string]any{"selected": 0, "purged": 0, "archived_tasks_deleted": 0})
				}
				fmt.Fprintln(m.Stdout, "no dead letters match the selection; nothing purged")
				return nil
			}
			if len(ids) > 1 && !yes {
				return usagef("this would purge %d dead letters for good; add --yes to confirm (dlq list with the same selectors shows them)", len(ids))
			}
			purged, err := m.purgeAll(ctx, s, ids, asJSON)
			deleted := 0
			for _, p := range purged {
				if p.ArchiveDeleted {
					deleted++
				}
			}
			if asJSON {
				if jerr := writeJSON(m.Stdout, map[string]any{"selected": len(ids), "purged": len(purged), "archived_tasks_deleted": deleted}); jerr != nil {
					return jerr
				}
			} else {
				fmt.Fprintf(m.Stdout, "purged %d of %d dead letters (%d archived tasks deleted from asynq)\n", len(purged), len(ids), deleted)
			}
			return err
		},
	}
	sel.register(cmd, "purge every record, whatever its status", 0)
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm purging more than one record")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON summary")
	return cmd
}

// purgeChunk is how many records purge deletes per call when it shows a bar.
const purgeChunk = 100

// purgeAll purges ids; on a terminal (without --json) it purges them a
// chunk at a time under a bar counting records.
func (m *Main) purgeAll(ctx context.Context, s *dlqSession, ids []string, asJSON bool) ([]dlq.Purged, error) {
	bar := itemBar(m.Stderr, len(ids) > purgeChunk && !asJSON && logging.IsTerminal(m.Stderr), int64(len(ids)), "purge", "records")
	if bar == nil {
		return s.store.Purge(ctx, ids...)
	}
	defer func() { _ = bar.Finish() }()
	var out []dlq.Purged
	for len(ids) > 0 {
		n := min(purgeChunk, len(ids))
		p, err := s.store.Purge(ctx, ids[:n]...)
		out = append(out, p...)
		_ = bar.Add(n)
		if err != nil {
			return out, err
		}
		ids = ids[n:]
	}
	return out, nil
}
