package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/agentq/agentq/queue"
)

const (
	// binaryPollInterval is how often the binary row reads asynq's
	// processed count: one GET, about 500 a second against the thousands of
	// commands a second the worker sends.
	binaryPollInterval = 2 * time.Millisecond
	// binaryStopTimeout bounds the child's graceful shutdown after SIGTERM;
	// then it is killed.
	binaryStopTimeout = 30 * time.Second
	// binaryLogTail is how many lines of the child's log an error quotes.
	binaryLogTail = 20
)

// binaryPhase pre-fills the configured number of keyed noop tasks, starts
// `Binary worker` as a child process and times it from its first finished
// task to its last, reading asynq's processed count every
// binaryPollInterval: the rate is the tasks finished after the first poll
// that saw any, over the time to the poll that saw all (so the child's
// start-up is not in it). When one poll already saw them all, the rate is
// counted from the child's start, start-up included. The child is stopped
// (SIGTERM, then SIGKILL after binaryStopTimeout) before the phase returns,
// whatever happens. Round trips are not counted: they happen in another
// process. Commands are, the polls left out, until the child has exited.
func (b *bench) binaryPhase(ctx context.Context) (Throughput, error) {
	n := b.opts.Tasks
	if err := b.fill(ctx, b.agentqK, n); err != nil {
		return Throughput{}, fmt.Errorf("pre-fill: %w", err)
	}
	if err := resetStats(ctx, b.rdb); err != nil {
		return Throughput{}, err
	}
	w, err := startBinary(b.opts)
	if err != nil {
		return Throughput{}, err
	}
	defer w.stop()
	var (
		polls      int64
		first      time.Time
		firstCount int64
	)
	tick := time.NewTicker(binaryPollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return Throughput{}, fmt.Errorf("waiting for the worker process: %w%s", context.Cause(ctx), w.logTail())
		case <-w.exited:
			return Throughput{}, fmt.Errorf("worker process exited early (%v)%s", w.err, w.logTail())
		case <-tick.C:
		}
		done, err := queue.ProcessedTotal(ctx, b.rdb, queue.QueueDefault)
		polls++
		if err != nil {
			return Throughput{}, err
		}
		now := time.Now()
		if done > 0 && first.IsZero() {
			first, firstCount = now, done
			if done >= int64(n) {
				first, firstCount = w.started, 0
			}
		}
		if done < int64(n) {
			continue
		}
		if err := w.stop(); err != nil {
			return Throughput{}, err
		}
		cmds, err := commandCount(ctx, b.rdb)
		if err != nil {
			return Throughput{}, err
		}
		elapsed := now.Sub(first)
		t := throughput(n, elapsed, cmds-polls)
		t.TasksPerSec = float64(int64(n)-firstCount) / elapsed.Seconds()
		return t, nil
	}
}

// binaryWorker is a running `agentq worker` child process.
type binaryWorker struct {
	cmd     *exec.Cmd
	dir     string
	log     string
	started time.Time
	// exited is closed when the process has exited; err is then its exit
	// error.
	exited chan struct{}
	err    error
	// stopped is set once stop ran.
	stopped bool
	stopErr error
}

// startBinary starts opts.Binary's worker command in a temporary directory
// (so that no ./agentq.yaml of the caller's is read), its output going to a
// log file there, metrics served on a free loopback port.
func startBinary(opts Options) (*binaryWorker, error) {
	dir, err := os.MkdirTemp("", "agentq-bench-")
	if err != nil {
		return nil, fmt.Errorf("worker process: %w", err)
	}
	w := &binaryWorker{dir: dir, log: filepath.Join(dir, "worker.log"), exited: make(chan struct{})}
	out, err := os.Create(w.log)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("worker process: %w", err)
	}
	defer out.Close()
	args := append([]string{"worker", "--concurrency", strconv.Itoa(opts.Concurrency),
		"--log-format", "json", "--log-level", "info", "--metrics-addr", "127.0.0.1:0"}, opts.BinaryArgs...)
	if opts.BinaryLoopsFlag != "" {
		args = append(args, opts.BinaryLoopsFlag, strconv.Itoa(opts.Loops))
	}
	w.cmd = exec.Command(opts.Binary, args...)
	w.cmd.Dir = dir
	w.cmd.Env = opts.BinaryEnv
	w.cmd.Stdout, w.cmd.Stderr = out, out
	dieWithParent(w.cmd)
	if err := w.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start worker process %s: %w", opts.Binary, err)
	}
	w.started = time.Now()
	go func() {
		w.err = w.cmd.Wait()
		close(w.exited)
	}()
	return w, nil
}

// stop ends the child: SIGTERM and a wait of binaryStopTimeout, then
// SIGKILL. It removes the temporary directory. Later calls return the first
// call's error.
func (w *binaryWorker) stop() error {
	if w.stopped {
		return w.stopErr
	}
	w.stopped = true
	defer os.RemoveAll(w.dir)
	select {
	case <-w.exited:
		return w.stopErr
	default:
	}
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		_ = w.cmd.Process.Kill()
	}
	timer := time.NewTimer(binaryStopTimeout)
	defer timer.Stop()
	select {
	case <-w.exited:
		if w.err != nil {
			w.stopErr = fmt.Errorf("worker process exited with %v after SIGTERM%s", w.err, w.logTail())
		}
	case <-timer.C:
		_ = w.cmd.Process.Kill()
		<-w.exited
		w.stopErr = fmt.Errorf("worker process did not stop within %v of SIGTERM; killed%s", binaryStopTimeout, w.logTail())
	}
	return w.stopErr
}

// logTail returns the last lines of the child's log, for an error.
func (w *binaryWorker) logTail() string {
	data, err := os.ReadFile(w.log)
	if err != nil || len(data) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	lines = lines[max(len(lines)-binaryLogTail, 0):]
	return "; its log ends:\n" + strings.Join(lines, "\n")
}
