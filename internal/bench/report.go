package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Report is the outcome of a run. Times are in milliseconds, rates in
// tasks per second.
type Report struct {
	// Environment describes where and with what settings the run happened.
	Environment Environment `json:"environment"`
	// Rows are the throughput rows, each agentq (or raw asynq's ceiling)
	// against raw asynq in the same run.
	Rows []Row `json:"rows"`
	// Latency is pickup latency at a steady rate.
	Latency Latencies `json:"latency"`
}

// Environment describes a run.
type Environment struct {
	// GoVersion is the Go runtime's version.
	GoVersion string `json:"go_version"`
	// GOMAXPROCS is the number of CPUs Go code may run on at once.
	GOMAXPROCS int `json:"gomaxprocs"`
	// NumCPU is the number of CPUs of the machine.
	NumCPU int `json:"num_cpu"`
	// RedisVersion is the Redis server's version.
	RedisVersion string `json:"redis_version"`
	// Tasks is the number of tasks per throughput phase.
	Tasks int `json:"tasks"`
	// Concurrency is the worker concurrency of both systems.
	Concurrency int `json:"concurrency"`
	// Enqueuers is the number of goroutines enqueueing at once.
	Enqueuers int `json:"enqueuers"`
	// Reps is how many times each row's pair of runs was repeated.
	Reps int `json:"reps"`
	// Loops is K, the dequeue loops (agentq) or servers (raw asynq) of the
	// K-loop rows.
	Loops int `json:"loops"`
	// Rate is the steady enqueue rate of the latency phase.
	Rate int `json:"rate"`
	// LatencyForMS is how long the latency phase enqueued.
	LatencyForMS float64 `json:"latency_for_ms"`
	// AsynqPollIntervalMS is raw asynq's TaskCheckInterval in the
	// processing rows and its agentq-interval latency measurement.
	AsynqPollIntervalMS float64 `json:"asynq_poll_interval_ms"`
	// AgentqPollIntervalMS is agentq's worker poll interval.
	AgentqPollIntervalMS float64 `json:"agentq_poll_interval_ms"`
}

// Row is one line of the table: the same work done by raw asynq and by
// agentq (for the ceiling row: raw asynq with K servers), Reps times.
// Medians are over the reps.
type Row struct {
	// Name names the row, e.g. "enqueue keyed".
	Name string `json:"name"`
	// Raw and Agentq say what each side ran.
	Raw    string `json:"raw"`
	Agentq string `json:"agentq"`
	// RawTasksPerSec and AgentqTasksPerSec are the medians of the sides'
	// throughputs.
	RawTasksPerSec    float64 `json:"raw_tasks_per_sec"`
	AgentqTasksPerSec float64 `json:"agentq_tasks_per_sec"`
	// Ratio is agentq's throughput over raw asynq's, per pair of runs:
	// the median and the range.
	Ratio Spread `json:"ratio"`
	// RawRoundTripsPerTask and AgentqRoundTripsPerTask are the medians of
	// the round trips per task, background loops included; null where they
	// were not counted (a child process).
	RawRoundTripsPerTask    *float64 `json:"raw_round_trips_per_task"`
	AgentqRoundTripsPerTask *float64 `json:"agentq_round_trips_per_task"`
	// ExtraRoundTripsPerTask is the median over the pairs of agentq's round
	// trips per task minus raw asynq's; null where not counted.
	ExtraRoundTripsPerTask *float64 `json:"extra_round_trips_per_task"`
	// RawCommandsPerTask and AgentqCommandsPerTask are the medians of the
	// Redis commands per task (INFO commandstats).
	RawCommandsPerTask    float64 `json:"raw_commands_per_task"`
	AgentqCommandsPerTask float64 `json:"agentq_commands_per_task"`
	// Targets are issue 8's targets for this row, judged on the medians.
	Targets []Target `json:"targets,omitempty"`
	// Runs are the pairs, in the order they ran.
	Runs []Pair `json:"runs"`
}

// Pair is one pair of runs of a row: raw asynq and agentq.
type Pair struct {
	Raw    Throughput `json:"raw"`
	Agentq Throughput `json:"agentq"`
	// Ratio is Agentq's throughput over Raw's.
	Ratio float64 `json:"ratio"`
}

// Spread is a median with the smallest and largest value.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// Target is one of issue 8's targets and whether the row meets it.
type Target struct {
	// Want says the target, e.g. "ratio >= 0.80".
	Want string `json:"want"`
	// Met is whether the row's median meets it; false when it could not be
	// judged.
	Met bool `json:"met"`
}

// Throughput is one timed throughput phase.
type Throughput struct {
	// Tasks is the number of tasks the phase handled.
	Tasks int `json:"tasks"`
	// ElapsedMS is the phase's wall time.
	ElapsedMS float64 `json:"elapsed_ms"`
	// TasksPerSec is Tasks divided by the elapsed time.
	TasksPerSec float64 `json:"tasks_per_sec"`
	// Commands is the number of commands Redis executed in the phase,
	// those run inside Lua scripts included.
	Commands int64 `json:"commands"`
	// CommandsPerTask is Commands divided by Tasks.
	CommandsPerTask float64 `json:"commands_per_task"`
	// RoundTrips is the number of round trips to Redis in the phase (a
	// pipeline counts one); null where not counted.
	RoundTrips *int64 `json:"round_trips"`
	// RoundTripsPerTask is RoundTrips divided by Tasks.
	RoundTripsPerTask *float64 `json:"round_trips_per_task"`
}

// Latencies are the pickup latencies measured.
type Latencies struct {
	// AsynqDefaultPoll is raw asynq with asynq's default TaskCheckInterval
	// (1s), the reason agentq polls more often.
	AsynqDefaultPoll Latency `json:"asynq_default_poll"`
	// Asynq is raw asynq polling at agentq's interval.
	Asynq Latency `json:"asynq"`
	// Agentq is agentq with K loops and the full chain.
	Agentq Latency `json:"agentq"`
}

// Latency is the pickup latency of one system: from the moment an enqueue
// returned to the moment the task's handler started.
type Latency struct {
	// PollIntervalMS is the idle poll interval the worker used.
	PollIntervalMS float64 `json:"poll_interval_ms"`
	// Tasks is the number of tasks measured.
	Tasks int `json:"tasks"`
	// P50MS is the median pickup latency.
	P50MS float64 `json:"p50_ms"`
	// P99MS is the 99th percentile pickup latency.
	P99MS float64 `json:"p99_ms"`
	// MaxMS is the largest pickup latency.
	MaxMS float64 `json:"max_ms"`
}

// targetKind is what a target bounds.
type targetKind int

const (
	// targetRatio: the median ratio is at least bound.
	targetRatio targetKind = iota
	// targetExtraRoundTrips: the median extra round trips per task are at
	// most bound.
	targetExtraRoundTrips
)

type target struct {
	kind  targetKind
	bound float64
}

func (t target) judge(r Row) Target {
	switch t.kind {
	case targetExtraRoundTrips:
		want := fmt.Sprintf("extra round trips/task <= %g", t.bound)
		return Target{Want: want, Met: r.ExtraRoundTripsPerTask != nil && *r.ExtraRoundTripsPerTask <= t.bound}
	default:
		return Target{Want: fmt.Sprintf("ratio >= %.2f", t.bound), Met: r.Ratio.Median >= t.bound}
	}
}

// summarize makes the report row of def from its runs.
func summarize(def row, runs []Pair) Row {
	r := Row{Name: def.name, Raw: def.raw, Agentq: def.agentq, Runs: runs}
	pick := func(f func(Pair) float64) []float64 {
		v := make([]float64, len(runs))
		for i, run := range runs {
			v[i] = f(run)
		}
		return v
	}
	r.RawTasksPerSec = spread(pick(func(x Pair) float64 { return x.Raw.TasksPerSec })).Median
	r.AgentqTasksPerSec = spread(pick(func(x Pair) float64 { return x.Agentq.TasksPerSec })).Median
	r.Ratio = spread(pick(func(x Pair) float64 { return x.Ratio }))
	r.RawCommandsPerTask = spread(pick(func(x Pair) float64 { return x.Raw.CommandsPerTask })).Median
	r.AgentqCommandsPerTask = spread(pick(func(x Pair) float64 { return x.Agentq.CommandsPerTask })).Median
	counted := func(t Throughput) bool { return t.RoundTripsPerTask != nil }
	if len(runs) > 0 && !slices.ContainsFunc(runs, func(x Pair) bool { return !counted(x.Raw) }) {
		v := spread(pick(func(x Pair) float64 { return *x.Raw.RoundTripsPerTask })).Median
		r.RawRoundTripsPerTask = &v
	}
	if len(runs) > 0 && !slices.ContainsFunc(runs, func(x Pair) bool { return !counted(x.Agentq) }) {
		v := spread(pick(func(x Pair) float64 { return *x.Agentq.RoundTripsPerTask })).Median
		r.AgentqRoundTripsPerTask = &v
	}
	if r.RawRoundTripsPerTask != nil && r.AgentqRoundTripsPerTask != nil {
		v := spread(pick(func(x Pair) float64 { return *x.Agentq.RoundTripsPerTask - *x.Raw.RoundTripsPerTask })).Median
		r.ExtraRoundTripsPerTask = &v
	}
	for _, t := range def.targets {
		r.Targets = append(r.Targets, t.judge(r))
	}
	return r
}

// spread returns the median (the mean of the middle two for an even count),
// smallest and largest of v; zeros when v is empty.
func spread(v []float64) Spread {
	if len(v) == 0 {
		return Spread{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Spread{Median: m, Min: s[0], Max: s[len(s)-1]}
}

// WriteText writes the report to w as markdown: the environment, the
// throughput table with round trips, commands and targets, and pickup
// latency.
func (r Report) WriteText(w io.Writer) error {
	e := r.Environment
	ew := &errWriter{w: w}
	fmt.Fprintf(ew, "%s, GOMAXPROCS %d (%d CPUs), redis %s, %d tasks, concurrency %d, %d enqueuers, K = %d loops, %d reps (ratio: median, min-max)\n\n",
		e.GoVersion, e.GOMAXPROCS, e.NumCPU, e.RedisVersion, e.Tasks, e.Concurrency, e.Enqueuers, e.Loops, e.Reps)
	fmt.Fprintln(ew, "| | raw asynq tasks/s | agentq tasks/s | ratio | round trips/task raw | agentq | extra | commands/task raw | agentq | target |")
	fmt.Fprintln(ew, "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|")
	for _, row := range r.Rows {
		var targets []string
		for _, t := range row.Targets {
			met := "not met"
			if t.Met {
				met = "met"
			}
			targets = append(targets, t.Want+": "+met)
		}
		fmt.Fprintf(ew, "| %s | %s | %s | **%.2f** (%.2f-%.2f) | %s | %s | %s | %.2f | %.2f | %s |\n",
			row.Name, thousands(row.RawTasksPerSec), thousands(row.AgentqTasksPerSec),
			row.Ratio.Median, row.Ratio.Min, row.Ratio.Max,
			optional(row.RawRoundTripsPerTask, "%.2f"), optional(row.AgentqRoundTripsPerTask, "%.2f"), optional(row.ExtraRoundTripsPerTask, "%+.2f"),
			row.RawCommandsPerTask, row.AgentqCommandsPerTask, strings.Join(targets, "; "))
	}
	if slices.ContainsFunc(r.Rows, func(row Row) bool { return row.Name == runsRowName }) {
		fmt.Fprintf(ew, "\n%s: the raw asynq column is agentq's plain noop tasks, the agentq column steps/s of three-step runs through the run engine; round trips are per step with each side's enqueues included (a plain task's enqueue; a run's start and the engine's enqueue of each next step), commands per step of the processing alone.\n", runsRowName)
	}
	fmt.Fprintf(ew, "\n| pickup latency at %d tasks/s for %v | p50 ms | p99 ms | max ms |\n|---|--:|--:|--:|\n", e.Rate, msDuration(e.LatencyForMS))
	for _, l := range []struct {
		name string
		l    Latency
	}{
		{"raw asynq", r.Latency.AsynqDefaultPoll},
		{"raw asynq", r.Latency.Asynq},
		{fmt.Sprintf("agentq, %d loops, full chain", e.Loops), r.Latency.Agentq},
	} {
		fmt.Fprintf(ew, "| %s, poll %v | %.2f | %.2f | %.2f |\n", l.name, msDuration(l.l.PollIntervalMS), l.l.P50MS, l.l.P99MS, l.l.MaxMS)
	}
	return ew.err
}

// optional formats *v, or "-" when it is nil.
func optional(v *float64, format string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(format, *v)
}

// thousands formats v rounded to a whole number with commas: 29,882.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// errWriter keeps the first write error, so a table is written without a
// check on every line.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func msDuration(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
