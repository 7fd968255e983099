package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentq/agentq/internal/binarytest"
	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/queue"
)

// TestEndlessInputsRefused: file names that lead to endless input are
// refused at once with exit 2 and a message naming the file or key, without
// reading gigabytes first (issue 7, new-user trial).
func TestEndlessInputsRefused(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero here")
	}
	noRedis := "AGENTQ_REDIS_URL=redis://127.0.0.1:1/0"
	dir := t.TempDir()
	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{name: "config is /dev/zero", args: []string{"--config", "/dev/zero", "config"},
			want: "config: /dev/zero is over 4 MiB"},
		{name: "config is a directory", args: []string{"--config", dir, "config"},
			want: "config: " + dir + " is a directory, not a config file"},
		{name: "huge max_payload_bytes", env: []string{"AGENTQ_ENQUEUE_MAX_PAYLOAD_BYTES=99999999999"},
			args: []string{"enqueue", "noop", "--payload", "@/dev/zero"},
			want: "enqueue.max_payload_bytes: must be at most 67108864 (64 MiB"},
		{name: "ca file is /dev/zero", env: []string{"AGENTQ_REDIS_TLS_CA_FILE=/dev/zero"},
			args: []string{"enqueue", "noop", "--payload", "{}"},
			want: "redis.tls.ca_file: /dev/zero is over 1 MiB"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, append([]string{noRedis}, tc.env...), "", tc.args...)
			if r.code == ExitOK || !strings.Contains(r.err, tc.want) {
				t.Fatalf("exit %d stderr %q, want a failure with %q", r.code, r.err, tc.want)
			}
		})
	}
}

// TestBatchSummaryWording: the batch summary and error say what happened,
// also when every line was rejected or the batch stopped part way.
func TestBatchSummaryWording(t *testing.T) {
	t.Parallel()
	rej := func(lines ...int) []queue.Rejection {
		var out []queue.Rejection
		for _, l := range lines {
			out = append(out, queue.Rejection{Line: l, Error: "bad"})
		}
		return out
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name     string
		ctx      context.Context
		sum      queue.BatchSummary
		text     string // the whole text summary
		rejected string // rejectedText, when lines were rejected
	}{
		{name: "all enqueued", ctx: context.Background(), sum: queue.BatchSummary{Lines: 2, Enqueued: 2},
			text: "lines: 2  enqueued: 2  duplicates: 0  rejected: 0\n"},
		{name: "only line rejected", ctx: context.Background(), sum: queue.BatchSummary{Lines: 1, Rejected: rej(1)},
			text:     "lines: 1  enqueued: 0  duplicates: 0  rejected: 1\n  line 1: bad\n",
			rejected: "the batch's only line was rejected (see above); nothing was enqueued"},
		{name: "all rejected", ctx: context.Background(), sum: queue.BatchSummary{Lines: 2, Rejected: rej(1, 2)},
			text:     "lines: 2  enqueued: 0  duplicates: 0  rejected: 2\n  line 1: bad\n  line 2: bad\n",
			rejected: "all 2 lines rejected (see above); nothing was enqueued"},
		{name: "some rejected", ctx: context.Background(), sum: queue.BatchSummary{Lines: 3, Enqueued: 2, Rejected: rej(2)},
			text:     "lines: 3  enqueued: 2  duplicates: 0  rejected: 1\n  line 2: bad\n",
			rejected: "1 of 3 lines rejected (see above); the others were enqueued"},
		{name: "rejected and duplicates", ctx: context.Background(), sum: queue.BatchSummary{Lines: 3, Enqueued: 1, Duplicates: 1, Rejected: rej(3)},
			text:     "lines: 3  enqueued: 1  duplicates: 1  rejected: 1\n  line 3: bad\n",
			rejected: "1 of 3 lines rejected (see above); the others were enqueued or duplicates"},
		{name: "rejected and only duplicates", ctx: context.Background(), sum: queue.BatchSummary{Lines: 2, Duplicates: 1, Rejected: rej(1)},
			text:     "lines: 2  enqueued: 0  duplicates: 1  rejected: 1\n  line 1: bad\n",
			rejected: "1 of 2 lines rejected (see above); the others were duplicates of tasks already enqueued"},
		{name: "interrupted", ctx: canceled, sum: queue.BatchSummary{Lines: 305152, Enqueued: 304777, NotDone: 375, StoppedAt: 304778},
			text: "lines: 305152  enqueued: 304777  duplicates: 0  rejected: 0  not done: 375\n" +
				"interrupted at line 304778: lines from 304778 on may not be enqueued; resend them (keyed lines are deduplicated)\n"},
		{name: "stopped by an error", ctx: context.Background(), sum: queue.BatchSummary{Lines: 10, Enqueued: 3, NotDone: 7, StoppedAt: 4},
			text: "lines: 10  enqueued: 3  duplicates: 0  rejected: 0  not done: 7\n" +
				"stopped at line 4: lines from 4 on may not be enqueued; resend them (keyed lines are deduplicated)\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := batchSummaryText(tc.ctx, tc.sum); got != tc.text {
				t.Errorf("summary:\n%q\nwant\n%q", got, tc.text)
			}
			if tc.rejected != "" {
				if got := rejectedText(tc.sum); got != tc.rejected {
					t.Errorf("rejected: %q, want %q", got, tc.rejected)
				}
			}
		})
	}
}

// TestBatchAllRejectedInProcess: a batch whose every line is rejected says
// nothing was enqueued, not that "the others were enqueued".
func TestBatchAllRejectedInProcess(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	r := run(t, []string{"AGENTQ_REDIS_URL=" + srv.URL}, "not json\n{\"kind\":\"nope\",\"payload\":{}}\n", "enqueue", "--batch", "-")
	if r.code != ExitPartial || !strings.Contains(r.err, "all 2 lines rejected (see above); nothing was enqueued") ||
		strings.Contains(r.err, "the others") {
		t.Fatalf("exit %d stderr %q", r.code, r.err)
	}
}

// endlessReader yields fill forever and cancels once it has yielded after
// bytes, as Ctrl-C would part way through a batch.
type endlessReader struct {
	fill   []byte
	after  int
	cancel context.CancelFunc
	n      int
}

func (r *endlessReader) Read(p []byte) (int, error) {
	if r.n >= r.after {
		r.cancel()
	}
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.fill[(r.n+n)%len(r.fill):])
		n += c
	}
	r.n += n
	return n, nil
}

// TestBatchInterruptedInProcess: an interrupted batch stops promptly, also
// in an endless line, and its summary accounts for every line read and
// says where to resume.
func TestBatchInterruptedInProcess(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	const line = `{"kind":"noop","payload":{}}` + "\n"
	tests := []struct {
		name string
		fill string
		json bool
	}{
		{name: "endless line", fill: "\x00"},
		{name: "endless lines", fill: line},
		{name: "endless lines json", fill: line, json: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			in := &endlessReader{fill: []byte(tc.fill), after: 2000 * len(line), cancel: cancel}
			var out, errb bytes.Buffer
			m := &Main{Stdin: in, Stdout: &out, Stderr: &errb, Environ: []string{"AGENTQ_REDIS_URL=" + srv.URL}}
			args := []string{"enqueue", "--batch", "-"}
			if tc.json {
				args = append(args, "--json")
			}
			code := m.Run(ctx, args)
			if code != ExitError || !strings.Contains(errb.String(), "interrupted at line") {
				t.Fatalf("exit %d stderr %q, want exit 1 and the interruption", code, errb.String())
			}
			if tc.json {
				var sum queue.BatchSummary
				if err := json.Unmarshal([]byte(lastLine(out.String())), &sum); err != nil {
					t.Fatalf("summary %q: %v", out.String(), err)
				}
				if sum.StoppedAt == 0 || sum.Lines != sum.Enqueued+sum.Duplicates+len(sum.Rejected)+sum.NotDone {
					t.Fatalf("summary %+v does not account for every line", sum)
				}
				return
			}
			if !strings.Contains(out.String(), "  not done: ") ||
				!strings.Contains(out.String(), "on may not be enqueued; resend them (keyed lines are deduplicated)") {
				t.Fatalf("stdout %q, want the lines not done and where to resume", out.String())
			}
		})
	}
}

// TestBatchSIGINT: Ctrl-C stops `agentq enqueue --batch -` promptly, also in
// the middle of an endless line (what `--batch /dev/zero` reads), and the
// summary says the batch was interrupted and where.
func TestBatchSIGINT(t *testing.T) {
	t.Parallel()
	bin := binarytest.Build(t)
	srv := redistest.Start(t)
	tests := []struct {
		name string
		fill string
	}{
		{name: "endless line", fill: strings.Repeat("\x00", 4096)},
		{name: "endless lines", fill: strings.Repeat(`{"kind":"noop","payload":{}}`+"\n", 100)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(bin, "enqueue", "--batch", "-")
			cmd.Env = append(os.Environ(), "AGENTQ_REDIS_URL="+srv.URL)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			// Writes to the pipe block until agentq reads: once 1 MiB is
			// written, it is in the batch's read loop.
			fill := []byte(tc.fill)
			for n := 0; n < 1<<20; n += len(fill) {
				if _, err := stdin.Write(fill); err != nil {
					t.Fatalf("write: %v; stderr %q", err, errb.String())
				}
			}
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			// Keep feeding it, as `yes` or /dev/zero would, until it exits.
			go func() {
				for {
					if _, err := stdin.Write(fill); err != nil {
						return
					}
				}
			}()
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("agentq ignored SIGINT for 20s; stdout %q stderr %q", out.String(), errb.String())
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != ExitError {
				t.Fatalf("exit %v, want %d; stderr %q", err, ExitError, errb.String())
			}
			if !strings.Contains(out.String(), "interrupted at line ") || !strings.Contains(errb.String(), "interrupted at line ") {
				t.Fatalf("stdout %q stderr %q, want the interruption in both", out.String(), errb.String())
			}
			_ = stdin.Close()
		})
	}
}

var _ io.Reader = (*endlessReader)(nil)

// TestParentCommandsRefuseUnknownSubcommand: every command that groups
// others refuses an argument that names none of them with exit 2, as
// `agentq breaker bogus` did, instead of printing its help and exiting 0
// (`agentq dlq bogus` did). budget's argument may be a workflow, so its
// message names both.
func TestParentCommandsRefuseUnknownSubcommand(t *testing.T) {
	t.Parallel()
	env := []string{"AGENTQ_REDIS_URL=redis://127.0.0.1:1/0"}
	var parents [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if c.HasSubCommands() {
			parents = append(parents, path)
		}
		for _, sub := range c.Commands() {
			walk(sub, append(slices.Clone(path), sub.Name()))
		}
	}
	walk((&Main{Name: "agentq"}).rootCommand(), nil)
	for _, want := range []string{"", "dlq", "budget", "breaker", "completion"} {
		if !slices.ContainsFunc(parents, func(p []string) bool { return strings.Join(p, " ") == want }) {
			t.Fatalf("parents %q lack %q", parents, want)
		}
	}
	for _, path := range parents {
		name := strings.Join(path, " ")
		if name == "" {
			name = "root"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want := `unknown command "bogus" for "agentq`
			if name == "budget" {
				want = `unknown workflow "bogus" (configured: none) or command of "agentq budget" (resume, reset)`
			}
			var out, errb bytes.Buffer
			m := &Main{Name: "agentq", Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Environ: env}
			code := m.Run(context.Background(), append(slices.Clone(path), "bogus"))
			if code != ExitUsage || !strings.Contains(errb.String(), want) || out.Len() != 0 {
				t.Fatalf("exit %d stdout %q stderr %q, want exit 2, no help, and %q", code, out.String(), errb.String(), want)
			}
		})
	}
}

// TestDLQReplayErrorPrintedOnce: a replay of one dead letter that fails
// prints its error once, not once as a "failed" line and again as the
// command's error.
func TestDLQReplayErrorPrintedOnce(t *testing.T) {
	t.Parallel()
	b := setupDLQ(t)
	tests := []struct {
		name    string
		payload string
		want    string
	}{
		{name: "not JSON", payload: `{"a":`, want: "payload is not valid JSON"},
		{name: "fails the schema", payload: `{"url":"not a url"}`, want: "replay refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := b.run(t, "dlq", "replay", b.ids["t-b"], "--payload", tc.payload)
			if r.code != ExitUsage {
				t.Fatalf("exit %d stderr %q, want exit 2", r.code, r.err)
			}
			if n := strings.Count(r.out+r.err, tc.want); n != 1 {
				t.Fatalf("%q printed %d times; stdout %q stderr %q", tc.want, n, r.out, r.err)
			}
		})
	}
}

// TestDashboardAddressInUseNamedOnce: a dashboard that cannot listen says
// so with one "dashboard:" prefix, not "dashboard: dashboard: listen: ...".
func TestDashboardAddressInUseNamedOnce(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Bounded in case it does serve: the test must still end.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	m := &Main{Name: "agentq", Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Environ: []string{"AGENTQ_REDIS_URL=" + srv.URL}}
	code := m.Run(ctx, []string{"dashboard", "--addr", l.Addr().String()})
	want := "agentq: dashboard: listen tcp " + l.Addr().String() + ": "
	if code != ExitError || !strings.Contains(errb.String(), want) || strings.Count(errb.String(), "dashboard:") != 1 {
		t.Fatalf("exit %d stderr %q, want exit 1 and one line starting %q", code, errb.String(), want)
	}
}
