//go:build unix

package binarytest

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is an agentq process a fault test may kill (SIGKILL), freeze
// (SIGSTOP) and thaw (SIGCONT), started by StartProcess.
type Process struct {
	// Name labels the process in test logs.
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed

	mu   sync.Mutex
	logs []string
}

// StartProcess runs bin with args and env until the test ends. Unlike
// Start it expects faults: when the test ends the process is thawed,
// asked to stop with SIGINT, and killed if it is still running 10s later,
// without failing the test. Its output is kept line by line and, if the
// test failed, its last lines are logged.
func StartProcess(t testing.TB, name, bin string, env, args []string) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &Process{Name: name, cmd: cmd, done: make(chan struct{})}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.logs = append(p.logs, sc.Text())
			p.mu.Unlock()
		}
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
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		<-copied
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

// PID is the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Lines returns the output lines so far (stdout and stderr).
func (p *Process) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.logs...)
}

// Exited reports whether the process has ended, and its Wait error.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Process) Kill(t testing.TB) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill %s: %v", p.Name, err)
	}
	<-p.done
}

// Stop freezes the process with SIGSTOP.
func (p *Process) Stop(t testing.TB) { p.signal(t, syscall.SIGSTOP) }

// Cont thaws a process frozen by Stop.
func (p *Process) Cont(t testing.TB) { p.signal(t, syscall.SIGCONT) }

func (p *Process) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%v to %s: %v", sig, p.Name, err)
	}
}
