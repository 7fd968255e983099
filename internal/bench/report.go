package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// WriteText writes the report to w as readable tables: the environment,
// throughput and Redis commands per task side by side, and pickup latency.
func (r Report) WriteText(w io.Writer) error {
	e := r.Environment
	ew := &errWriter{w: w}
	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s, GOMAXPROCS %d, redis %s, %d tasks, concurrency %d, %d enqueuers\n\n",
		e.GoVersion, e.GOMAXPROCS, e.RedisVersion, e.Tasks, e.Concurrency, e.Enqueuers)
	fmt.Fprintf(tw, "\tasynq\tagentq\tagentq/asynq\t\n")
	fmt.Fprintf(tw, "enqueue tasks/s\t%.0f\t%.0f\t%.2f\t\n", r.Asynq.Enqueue.TasksPerSec, r.Agentq.Enqueue.TasksPerSec, r.Ratio.Enqueue)
	fmt.Fprintf(tw, "process tasks/s\t%.0f\t%.0f\t%.2f\t\n", r.Asynq.Process.TasksPerSec, r.Agentq.Process.TasksPerSec, r.Ratio.Process)
	fmt.Fprintf(tw, "redis commands/task, enqueue\t%.2f\t%.2f\t\t\n", r.Asynq.Enqueue.CommandsPerTask, r.Agentq.Enqueue.CommandsPerTask)
	fmt.Fprintf(tw, "redis commands/task, process\t%.2f\t%.2f\t\t\n", r.Asynq.Process.CommandsPerTask, r.Agentq.Process.CommandsPerTask)
	fmt.Fprintf(tw, "redis commands/task, total\t%.2f\t%.2f\t\t\n", r.Asynq.CommandsPerTask, r.Agentq.CommandsPerTask)
	fmt.Fprintf(tw, "\t\t\t\t\n")
	fmt.Fprintf(tw, "pickup latency at %d tasks/s for %v\tp50 ms\tp99 ms\tmax ms\t\n", e.Rate, msDuration(e.LatencyForMS))
	for _, row := range []struct {
		name string
		l    Latency
	}{
		{"asynq", r.AsynqDefaultPoll},
		{"asynq", r.Asynq.Latency},
		{"agentq", r.Agentq.Latency},
	} {
		fmt.Fprintf(tw, "%s, poll %v\t%.2f\t%.2f\t%.2f\t\n", row.name, msDuration(row.l.PollIntervalMS), row.l.P50MS, row.l.P99MS, row.l.MaxMS)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return ew.err
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
