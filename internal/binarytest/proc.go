package binarytest

import (
	"bufio"
	"cmp"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentq/agentq/internal/redistest"
)

// StopWithinDefault is how long a process started by Start gets to exit
// after SIGINT when the test ends, before it is killed.
const StopWithinDefault = 20 * time.Second

// Options say how Start and Run run a binary. The zero value runs it in the
// test process's working directory with the test process's environment.
type Options struct {
	// Dir is the working directory. Default: the test process's.
	Dir string
	// Env is the environment. Default (nil): the test process's; see
	// Environ for one without outside AGENTQ_* settings.
	Env []string

	// Name labels a started process in failure messages. Default: the
	// binary's base name and its arguments.
	Name string
	// OnLine, if set, sees every output line of a started process as it
	// arrives. Default: none.
	OnLine func(line string)
	// AllowUncleanExit, if set, keeps the end-of-test cleanup from failing
	// the test when a started process does not exit with status 0 within
	// StopWithin of SIGINT, for tests that expect faults. A process the
	// test ended with Kill is never held to a clean exit. Default: false.
	AllowUncleanExit bool
	// StopWithin is how long a started process gets to exit after SIGINT
	// when the test ends, before it is killed. Default: StopWithinDefault.
	StopWithin time.Duration

	// Stdin is what Run feeds the process. Default: nothing.
	Stdin string
	// Timeout bounds Run: the process is killed after it (and then exits
	// with code -1). Default: RunTimeoutDefault.
	Timeout time.Duration
}

// Proc is a long-running process (such as an agentq worker) started by
// Start.
type Proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its Wait error, set before done is closed

	mu     sync.Mutex
	logs   strings.Builder
	killed bool // ended by Kill
}

// Start runs bin with args until the test ends and captures its output
// (stdout and stderr) line by line. When the test ends, the process is
// thawed (see Stop), sent SIGINT, and killed if it is still running
// o.StopWithin later; unless o.AllowUncleanExit is set or the test ended
// it with Kill, the test fails if it did not exit with status 0 in time.
// If the test failed, the last 40 output lines are logged.
func Start(t testing.TB, bin string, args []string, o Options) *Proc {
	t.Helper()
	name := o.Name
	if name == "" {
		name = strings.Join(append([]string{filepath.Base(bin)}, args...), " ")
	}
	stopWithin := cmp.Or(o.StopWithin, StopWithinDefault)
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Env = o.Dir, o.Env
	redistest.KillWithParent(cmd)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &Proc{name: name, cmd: cmd, done: make(chan struct{})}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			if o.OnLine != nil {
				o.OnLine(line)
			}
		}
		if err := sc.Err(); err != nil {
			p.mu.Lock()
			p.logs.WriteString("binarytest: output no longer captured: " + err.Error() + "\n")
			p.mu.Unlock()
		}
		// Keep draining, or the process would block writing its output.
		_, _ = io.Copy(io.Discard, pr)
	}()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		_ = pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cont(cmd.Process)
		_ = cmd.Process.Signal(os.Interrupt)
		exited, err := p.Wait(stopWithin)
		if !exited {
			_ = cmd.Process.Kill()
			<-p.done
		}
		<-copied
		p.mu.Lock()
		killed := p.killed
		p.mu.Unlock()
		switch {
		case o.AllowUncleanExit || killed:
		case !exited:
			t.Errorf("%s did not stop within %v of SIGINT", name, stopWithin)
		case err != nil:
			t.Errorf("%s did not exit cleanly on SIGINT: %v", name, err)
		}
		if t.Failed() {
			lines := p.Lines()
			if len(lines) > 40 {
				lines = lines[len(lines)-40:]
			}
			t.Logf("%s: last %d output lines:", name, len(lines))
			for _, l := range lines {
				t.Logf("  %s", l)
			}
		}
	})
	return p
}

// Name labels the process in failure messages (see Options.Name).
func (p *Proc) Name() string { return p.name }

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Logs returns what the process wrote so far (stdout and stderr), one
// line after another, each ended by a newline.
func (p *Proc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// Lines returns the lines the process wrote so far (stdout and stderr).
func (p *Proc) Lines() []string {
	logs := p.Logs()
	if logs == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(logs, "\n"), "\n")
}

// Exited reports whether the process has ended, and if so its Wait error
// (nil for exit status 0).
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Wait waits up to within for the process to end and reports as Exited
// does.
func (p *Proc) Wait(within time.Duration) (bool, error) {
	timer := time.NewTimer(within)
	defer timer.Stop()
	select {
	case <-p.done:
		return true, p.err
	case <-timer.C:
		return false, nil
	}
}

// Interrupt sends SIGINT, as Ctrl-C does; Wait then tells how it ended.
func (p *Proc) Interrupt(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatalf("SIGINT to %s: %v", p.name, err)
	}
}

// Kill thaws the process if it is stopped, sends SIGKILL (no shutdown, no
// cleanup, no acknowledgement) and waits for it to be gone.
func (p *Proc) Kill(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	p.killed = true
	p.mu.Unlock()
	_ = cont(p.cmd.Process)
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill %s: %v", p.name, err)
	}
	<-p.done
}

// Stop freezes the process with SIGSTOP (unix only).
func (p *Proc) Stop(t testing.TB) {
	t.Helper()
	if err := stop(p.cmd.Process); err != nil {
		t.Fatalf("SIGSTOP to %s: %v", p.name, err)
	}
}

// Cont thaws a process frozen by Stop with SIGCONT (unix only).
func (p *Proc) Cont(t testing.TB) {
	t.Helper()
	if err := cont(p.cmd.Process); err != nil {
		t.Fatalf("SIGCONT to %s: %v", p.name, err)
	}
}
