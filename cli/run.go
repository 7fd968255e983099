package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/redact"
	"github.com/agentq/agentq/runs"
)

// runStatuses are the statuses `run list --status` takes, in the order
// a run goes through them.
var runStatuses = []runs.Status{runs.StatusRunning, runs.StatusWaiting, runs.StatusSucceeded,
	runs.StatusFailed, runs.StatusCapped, runs.StatusCancelled}

// maxInputBytes bounds what --input reads from a file or stdin.
const maxInputBytes = 1 << 20

// maxRunIDLen bounds a run id argument; longer ones are refused unasked.
const maxRunIDLen = 256

func (m *Main) runCommand(rf *rootFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Start, list, show and cancel agent runs",
		Example: `  agentq run start article --input '{"topic": "retries"}'
  agentq run list --workflow article --since 1d
  agentq run show run-42
  agentq run cancel run-42 --reason "wrong input"`,
		Long: `An agent run runs a workflow's steps (workflows.<name>.steps in the config
file, or workflows a Go program defines) one after another, each step one
queued task with its own retries and dead letter. A worker runs the steps:
start a run here, then watch it with run show.

A run is running, waiting, succeeded, failed (a step was dead-lettered and
had no fallback; replaying its dead letter continues the run), capped (it
went over one of its caps) or cancelled.

Exit codes: 0 done, 1 runtime error, 2 bad input (flags, unknown workflow
or run).`,
	}
	cmd.AddCommand(m.runStartCommand(rf), m.runListCommand(rf), m.runShowCommand(rf), m.runCancelCommand(rf))
	return cmd
}

// runSession is one run command's runtime and engine.
type runSession struct {
	rt     *agentq.Runtime
	runs   *runs.Runs
	redact *redact.Redactor
}

func (s *runSession) close() { _ = s.rt.Close() }

// openRuns builds the runtime; check, if set, runs before Redis is asked.
func (m *Main) openRuns(cmd *cobra.Command, rf *rootFlags, check func(*agentq.Runtime) error) (*runSession, error) {
	rt, err := m.open(cmd, rf, true)
	if err != nil {
		return nil, err
	}
	if check != nil {
		if err := check(rt); err != nil {
			_ = rt.Close()
			return nil, err
		}
	}
	if err := rt.Ping(cmd.Context()); err != nil {
		_ = rt.Close()
		return nil, err
	}
	rn, err := rt.Runs()
	if err != nil {
		_ = rt.Close()
		return nil, usage(err)
	}
	return &runSession{rt: rt, runs: rn, redact: rt.OutputRedactor()}, nil
}

type runStartFlags struct {
	input, key string
	capCost    float64
	capTokens  int64
	asJSON     bool
}

func (m *Main) runStartCommand(rf *rootFlags) *cobra.Command {
	f := &runStartFlags{}
	cmd := &cobra.Command{
		Use:   "start WORKFLOW [--input JSON|@FILE|-] [--key K] [--cap-cost USD] [--cap-tokens N] [--json]",
		Short: "Start a run of a workflow and print its id",
		Example: `  agentq run start article --input '{"topic": "retries"}'
  agentq run start article --input @input.json --key article-2026-12-01 --json
  echo '{"topic": "x"}' | agentq run start article --input - --cap-cost 0.50 --cap-tokens 20000`,
		Long: `Start a run of WORKFLOW with --input (a JSON object, @FILE or - for stdin;
default {}), which step payload templates read as .input. With --key the start
is idempotent: the same workflow and key give the first run's id again, and
the run is reported as a duplicate. --cap-cost and --cap-tokens tighten the
workflow's caps for this run; they cannot loosen them.`,
		Args: oneArg("a workflow name", "config, under workflows"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return m.runStart(cmd, rf, f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.input, "input", "", "the run's input: a JSON object, @FILE, or - for stdin (default {})")
	fl.StringVar(&f.key, "key", "", "idempotency key: a second start with it gives the first run")
	fl.Float64Var(&f.capCost, "cap-cost", 0, "cap this run's cost at USD (tighter than the workflow's)")
	fl.Int64Var(&f.capTokens, "cap-tokens", 0, "cap this run's tokens at N (tighter than the workflow's)")
	fl.BoolVar(&f.asJSON, "json", false, `print {"run_id": ..., "duplicate": ...}`)
	return cmd
}

func (m *Main) runStart(cmd *cobra.Command, rf *rootFlags, f *runStartFlags, workflow string) error {
	var caps runs.Caps
	if cmd.Flags().Changed("cap-cost") {
		if err := checkCapFlag("--cap-cost", runs.Caps{MaxCostUSD: f.capCost}, f.capCost == 0); err != nil {
			return err
		}
		caps.MaxCostUSD = f.capCost
	}
	if cmd.Flags().Changed("cap-tokens") {
		if err := checkCapFlag("--cap-tokens", runs.Caps{MaxTokens: f.capTokens}, f.capTokens == 0); err != nil {
			return err
		}
		caps.MaxTokens = f.capTokens
	}
	input := []byte("{}")
	if cmd.Flags().Changed("input") {
		var err error
		if input, err = m.readInput(f.input); err != nil {
			return err
		}
	}
	if err := checkInput(input); err != nil {
		return err
	}
	if err := runs.CheckStart(input, runs.StartOptions{Key: f.key, Caps: caps}); err != nil {
		return usageError{err}
	}
	s, err := m.openRuns(cmd, rf, func(rt *agentq.Runtime) error { return checkWorkflow(rt, workflow) })
	if err != nil {
		return err
	}
	defer s.close()
	{
		wc := s.rt.Workflows()[workflow].Caps
		// A run's caps only tighten its workflow's: say so when a flag
		// asks for more.
		if caps.MaxCostUSD > 0 && wc.MaxCostUSD > 0 && caps.MaxCostUSD > wc.MaxCostUSD {
			fmt.Fprintf(m.Stderr, "note: --cap-cost %v is above workflow %s's max_cost_usd %v, which applies\n", caps.MaxCostUSD, workflow, wc.MaxCostUSD)
		}
		if caps.MaxTokens > 0 && wc.MaxTokens > 0 && caps.MaxTokens > wc.MaxTokens {
			fmt.Fprintf(m.Stderr, "note: --cap-tokens %d is above workflow %s's max_tokens %d, which applies\n", caps.MaxTokens, workflow, wc.MaxTokens)
		}
	}
	st, err := s.runs.Start(cmd.Context(), workflow, input, runs.StartOptions{Key: f.key, Caps: caps})
	if err != nil {
		return err
	}
	started := m.warnUnservedRun(cmd.Context(), s.rt, workflow, st)
	if f.asJSON {
		return writeJSON(m.Stdout, started)
	}
	fmt.Fprintln(m.Stdout, st.RunID)
	if st.Duplicate {
		fmt.Fprintf(m.Stderr, "duplicate: key %q already started run %s of workflow %q; nothing new was started\n", f.key, st.RunID, workflow)
	}
	return nil
}

// checkWorkflow refuses a workflow that is not a run workflow, naming the
// ones there are.
func checkWorkflow(rt *agentq.Runtime, name string) error {
	wfs := rt.Workflows()
	if _, ok := wfs[name]; ok {
		return nil
	}
	names := slices.Sorted(maps.Keys(wfs))
	if len(names) == 0 {
		return notFoundf("no workflow %s: none defines steps (add workflows.<name>.steps to the config file)", shortQuote(name))
	}
	return notFoundf("no workflow %s with steps (workflows: %s)", shortQuote(name), strings.Join(names, ", "))
}

// readInput reads --input: the JSON itself, @FILE or - for stdin, at most
// maxInputBytes from a file or stdin; a leading UTF-8 BOM is dropped.
func (m *Main) readInput(spec string) ([]byte, error) {
	var r io.Reader
	switch {
	case spec == "-":
		r = m.Stdin
	case strings.HasPrefix(spec, "@"):
		file, err := os.Open(spec[1:])
		if err != nil {
			return nil, usagef("--input %s: %v", spec, err)
		}
		defer file.Close()
		if st, err := file.Stat(); err == nil && st.IsDir() {
			return nil, usagef("--input %s: is a directory, not a file", spec)
		}
		r = file
	default:
		return []byte(spec), nil
	}
	b, err := io.ReadAll(io.LimitReader(r, maxInputBytes+1))
	switch {
	case err != nil:
		return nil, usagef("--input %s: %v", spec, err)
	case len(b) > maxInputBytes:
		return nil, usagef("--input %s: over %d bytes; stopped reading", spec, maxInputBytes)
	}
	return bytes.TrimPrefix(b, []byte("\ufeff")), nil
}

// checkInput refuses an input that is not one JSON object, naming the
// problem and where it is.
func checkInput(input []byte) error {
	dec := json.NewDecoder(bytes.NewReader(input))
	var v any
	if err := dec.Decode(&v); err != nil {
		var se *json.SyntaxError
		switch {
		case errors.As(err, &se):
			return usagef("--input is not valid JSON: %v (at byte %d)", err, se.Offset)
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return usagef("--input is not valid JSON: it ends before the value does")
		}
		return usagef("--input is not valid JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return usagef("--input is not valid JSON: more follows the first value")
	}
	if _, ok := v.(map[string]any); !ok {
		return usagef("--input must be a JSON object (templates read its fields as .input.<name>), got %s", jsonShape(v))
	}
	return nil
}

func jsonShape(v any) string {
	switch v.(type) {
	case []any:
		return "an array"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "a value"
}

type runListFlags struct {
	workflow, status, since string
	limit                   int
	asJSON                  bool
}

// filter checks the flags and turns them into list options.
func (f *runListFlags) filter(now time.Time) (runs.ListOptions, error) {
	o := runs.ListOptions{Workflow: f.workflow, Limit: f.limit}
	if f.status != "" {
		st := runs.Status(strings.ToLower(strings.TrimSpace(f.status)))
		if !slices.Contains(runStatuses, st) {
			names := make([]string, len(runStatuses))
			for i, s := range runStatuses {
				names[i] = string(s)
			}
			return o, usagef("--status %s is not a run status: one of %s", shortQuote(f.status), strings.Join(names, ", "))
		}
		o.Status = st
	}
	if f.since != "" {
		since, err := parseSince(f.since, now)
		if err != nil {
			return o, err
		}
		o.Since = since
	}
	switch {
	case f.limit < 0:
		return o, usagef("--limit must not be negative, got %d", f.limit)
	case f.limit == 0:
		o.Limit = runs.NoLimit
	}
	return o, nil
}

// parseSince reads --since, the same for every command that has it: a
// duration before now (24h, 3d, 1d12h: jobs.ParseDuration) or an RFC 3339
// time. 0 is no limit (the zero time), as leaving --since out. A negative
// duration and a time after now are refused; a duration out of range says
// so.
func parseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	d, err := jobs.ParseDuration(s)
	var de *jobs.DurationError
	switch {
	case err == nil && d < 0:
		return time.Time{}, usagef("--since must not be negative, got %s", shortQuote(s))
	case err == nil && d == 0:
		return time.Time{}, nil
	case err == nil:
		return now.Add(-d), nil
	case errors.As(err, &de) && de.Reason == "out of range":
		return time.Time{}, usagef("--since %s is out of range", shortQuote(s))
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		if t.After(now) {
			return time.Time{}, usagef("--since %s is in the future", shortQuote(s))
		}
		return t, nil
	}
	return time.Time{}, usagef("--since %s is neither a duration (24h, 3d, 1d12h) nor an RFC 3339 time (2026-12-01T09:00:00Z)", shortQuote(s))
}

// sinceHelp is the help of a --since flag; what says what is compared.
func sinceHelp(what string) string {
	return what + " within this long (24h, 3d, 1d12h) or since this RFC 3339 time"
}

// runListJSON is run list's --json document.
type runListJSON struct {
	Runs      []runs.Summary       `json:"runs"`
	NextTicks map[string]time.Time `json:"next_ticks"`
}

func (m *Main) runListCommand(rf *rootFlags) *cobra.Command {
	f := &runListFlags{}
	cmd := &cobra.Command{
		Use:   "list [--workflow W] [--status S] [--since D] [--limit N] [--json]",
		Short: "List runs, newest first, and the next tick of each scheduled workflow",
		Example: `  agentq run list
  agentq run list --workflow article --status failed --since 7d
  agentq run list --since 2026-12-01T00:00:00Z --limit 0 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now()
			o, err := f.filter(now)
			if err != nil {
				return err
			}
			s, err := m.openRuns(cmd, rf, nil)
			if err != nil {
				return err
			}
			defer s.close()
			list, err := s.runs.List(cmd.Context(), o)
			if err != nil {
				return err
			}
			ticks := s.rt.NextTicks(now)
			if f.workflow != "" {
				maps.DeleteFunc(ticks, func(name string, _ time.Time) bool { return name != f.workflow })
			}
			if f.asJSON {
				if list == nil {
					list = []runs.Summary{}
				}
				return writeJSON(m.Stdout, runListJSON{Runs: list, NextTicks: ticks})
			}
			return writeRunList(m.Stdout, m.Stderr, list, ticks, o.Limit)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.workflow, "workflow", "", "only runs of this workflow")
	fl.StringVar(&f.status, "status", "", "only runs in this status: running, waiting, succeeded, failed, capped, cancelled")
	fl.StringVar(&f.since, "since", "", sinceHelp("only runs created"))
	fl.IntVar(&f.limit, "limit", runs.ListLimitDefault, "at most N runs (0: no limit)")
	fl.BoolVar(&f.asJSON, "json", false, `print {"runs": [...], "next_ticks": {...}}`)
	return cmd
}

func writeRunList(w, stderr io.Writer, list []runs.Summary, ticks map[string]time.Time, limit int) error {
	if len(list) == 0 {
		fmt.Fprintln(w, "no runs match")
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "RUN ID\tWORKFLOW\tSTATUS\tSTEP\tTOKENS\tCOST\tCREATED")
		for _, r := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", printable(r.ID), printable(r.Workflow), r.Status,
				printable(dash(r.Step)), r.TokensIn+r.TokensOut, usd(r.CostUSD), r.Created.Format(time.RFC3339))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if limit > 0 && len(list) == limit {
			fmt.Fprintf(stderr, "showing the newest %d; raise --limit for more, --limit 0 lists all\n", limit)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(ticks)) {
		fmt.Fprintf(w, "next tick: %s at %s\n", printable(name), ticks[name].Format("2006-01-02 15:04:05 MST"))
	}
	return nil
}

// usd formats a cost in US dollars; small costs keep their cents' fractions.
// usd shows a cost in US dollars: four decimals, more for a cost under a
// cent so that small model calls do not show as $0.0000.
func usd(c float64) string {
	if c > 0 && c < 0.01 {
		v := strings.TrimRight(strconv.FormatFloat(c, 'f', 8, 64), "0")
		if strings.HasSuffix(v, ".") {
			v = "<0.00000001"
		}
		return "$" + v
	}
	return fmt.Sprintf("$%.4f", c)
}

// checkRunID refuses, without asking Redis, an argument that cannot be a
// run id.
func checkRunID(id string) error {
	if strings.TrimSpace(id) == "" || len(id) > maxRunIDLen || strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return notFoundf("no run with id %s: run ids are what run start and run list print", shortQuote(id))
	}
	return nil
}

// notFound marks runs.ErrNotFound as the user's input.
func notFound(err error, id string) error {
	if errors.Is(err, runs.ErrNotFound) {
		return notFoundf("no run with id %s (never started, or finished longer ago than runs.retention)", shortQuote(id))
	}
	return err
}

func (m *Main) runShowCommand(rf *rootFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show RUN [--json]",
		Short: "Show a run: input, status, totals against caps, each step, history",
		Example: `  agentq run show run-42
  agentq run show run-42 --json | jq .by_model`,
		Args: oneArg("a run id", "run list"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRunID(args[0]); err != nil {
				return err
			}
			s, err := m.openRuns(cmd, rf, nil)
			if err != nil {
				return err
			}
			defer s.close()
			r, err := s.runs.Get(cmd.Context(), args[0])
			if err != nil {
				return notFound(err, args[0])
			}
			r = s.present(r)
			if asJSON {
				return writeJSON(m.Stdout, r)
			}
			return writeRun(m.Stdout, r)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// present returns a copy of r with secrets masked in its input, outputs
// and errors.
func (s *runSession) present(r *runs.Run) *runs.Run {
	c := *r
	c.Input = s.redactJSON(r.Input)
	c.Steps = slices.Clone(r.Steps)
	for i := range c.Steps {
		st := &c.Steps[i]
		st.Output = s.redactJSON(st.Output)
		st.OutputSummary = s.redact.Text(st.OutputSummary)
		st.LastError = s.redact.Text(st.LastError)
	}
	c.History = slices.Clone(r.History)
	for i := range c.History {
		c.History[i].Text = s.redact.Text(c.History[i].Text)
	}
	c.Reason = s.redact.Text(r.Reason)
	return &c
}

func (s *runSession) redactJSON(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return b
	}
	if red, ok := s.redact.JSON(b); ok {
		return red
	}
	q, _ := json.Marshal(s.redact.Text(string(b)))
	return q
}

func writeRun(w io.Writer, r *runs.Run) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, printable(v))
		}
	}
	row("run", r.ID)
	row("workflow", r.Workflow)
	row("status", string(r.Status))
	row("reason", r.Reason)
	row("key", r.Key)
	row("input", string(r.Input))
	row("created", r.Created.Format(time.RFC3339))
	if !r.Ended.IsZero() {
		row("ended", r.Ended.Format(time.RFC3339)+" (took "+r.Ended.Sub(r.Created).Round(time.Second).String()+")")
	}
	c := r.Caps
	row("cost", usd(r.CostUSD)+capOf(c.MaxCostUSD > 0, usd(c.MaxCostUSD)))
	row("tokens", fmt.Sprintf("%d (in %d, out %d)", r.TokensIn+r.TokensOut, r.TokensIn, r.TokensOut)+capOf(c.MaxTokens > 0, fmt.Sprint(c.MaxTokens)))
	row("steps started", fmt.Sprint(r.StepsStarted)+capOf(c.MaxSteps > 0, fmt.Sprint(c.MaxSteps)))
	row("attempts", fmt.Sprint(r.Attempts)+capOf(c.MaxAttempts > 0, fmt.Sprint(c.MaxAttempts)))
	if c.MaxDuration > 0 {
		row("max duration", jobs.FormatDuration(c.MaxDuration))
	}
	for _, model := range slices.Sorted(maps.Keys(r.ByModel)) {
		t := r.ByModel[model]
		row("model "+model, fmt.Sprintf("%s, %d tokens (in %d, out %d), %s", plural(t.Attempts, "attempt"), t.TokensIn+t.TokensOut, t.TokensIn, t.TokensOut, usd(t.CostUSD)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nsteps:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  STEP\tKIND\tSTATUS\tATTEMPTS\tDURATION\tTOKENS\tCOST\tDEAD LETTER\tOUTPUT / ERROR")
	for _, st := range r.Steps {
		name := st.Name
		if st.FallbackFor != "" {
			name += " (fallback for " + st.FallbackFor + ")"
		}
		if st.Added {
			name += " (added)"
		}
		dur := "-"
		if st.Duration > 0 {
			dur = st.Duration.Round(time.Millisecond).String()
		}
		detail := st.OutputSummary
		if st.LastError != "" && st.Status != runs.StepSucceeded {
			detail = "error: " + st.LastError
			if st.LastClass != "" {
				detail = "error (" + string(st.LastClass) + "): " + st.LastError
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\n", printable(name), printable(st.Kind), st.Status, st.Attempts, dur,
			st.TokensIn+st.TokensOut, usd(st.CostUSD), printable(dash(st.DeadLetter)), clip(detail, 80))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.History) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nhistory:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, e := range r.History {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", e.At.Format(time.RFC3339), printable(e.Kind), printable(dash(e.Step)), printable(e.Text))
	}
	return tw.Flush()
}

// plural is "1 attempt", "2 attempts".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// capOf is " of LIMIT (cap)" when a cap is set.
func capOf(set bool, limit string) string {
	if !set {
		return ""
	}
	return " of " + limit + " (cap)"
}

func (m *Main) runCancelCommand(rf *rootFlags) *cobra.Command {
	var (
		reason string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "cancel RUN [--reason TEXT] [--json]",
		Short: "Cancel a run: no further step of it starts",
		Example: `  agentq run cancel run-42
  agentq run cancel run-42 --reason "superseded by run-43"`,
		Args: oneArg("a run id", "run list"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRunID(args[0]); err != nil {
				return err
			}
			if err := runs.CheckReason(reason); err != nil {
				return usageError{err}
			}
			s, err := m.openRuns(cmd, rf, nil)
			if err != nil {
				return err
			}
			defer s.close()
			if err := s.runs.Cancel(cmd.Context(), args[0], reason); err != nil {
				return notFound(err, args[0])
			}
			if asJSON {
				return writeJSON(m.Stdout, map[string]any{"run_id": args[0], "cancelled": true})
			}
			fmt.Fprintf(m.Stdout, "cancelled run %s\n", printable(args[0]))
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, kept in the run's history")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"run_id", "cancelled": true}`)
	return cmd
}

// checkCapFlag checks a cap flag's value, c with that cap alone, by the
// runs package's rule (Caps.Check), as a usage error naming the flag. A cap
// of 0 is valid there (no cap) but, given as a flag, would silently tighten
// nothing: it is refused too.
func checkCapFlag(flag string, c runs.Caps, zero bool) error {
	if err := c.Check(); err != nil {
		var fe *runs.FieldError
		if errors.As(err, &fe) {
			// A flag of 0 is refused below: do not offer it as "no cap".
			return usagef("%s %s", flag, strings.Replace(fe.Reason, " (0 for no cap)", "", 1))
		}
		return usagef("%s: %w", flag, err)
	}
	if zero {
		return usagef("%s must be above 0, got 0 (a cap of 0 is no cap, so it would not tighten the workflow's)", flag)
	}
	return nil
}
