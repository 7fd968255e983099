// Package binarytest builds the real agentq binary (or another main
// package of this module, such as a test binary with extra task kinds) once
// per test process, for end-to-end tests that drive it as a user would, and
// removes it when the tests end.
package binarytest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

var (
	mu     sync.Mutex
	dir    string
	builds = map[string]*build{}
)

// build is one main package, built at most once.
type build struct {
	once sync.Once
	path string
	err  error
}

// Build returns the path of an agentq binary built from ./cmd/agentq of this
// module. It is built once per test process; tests in -short mode skip.
func Build(t testing.TB) string {
	t.Helper()
	return BuildPackage(t, "github.com/agentq/agentq/cmd/agentq")
}

// BuildPackage returns the path of a binary built from the main package
// importPath, named after its last path element. Each package is built
// once per test process; tests in -short mode skip.
func BuildPackage(t testing.TB, importPath string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs " + importPath)
	}
	mu.Lock()
	if dir == "" {
		d, err := os.MkdirTemp("", "agentq-e2e-")
		if err != nil {
			mu.Unlock()
			t.Fatal(err)
		}
		dir = d
	}
	b := builds[importPath]
	if b == nil {
		b = &build{}
		builds[importPath] = b
	}
	root := dir
	mu.Unlock()
	b.once.Do(func() {
		sub, err := os.MkdirTemp(root, "bin-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(sub, path.Base(importPath))
		out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", b.path, importPath).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", importPath, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// Cleanup removes the built binary; call it after the tests have run (see
// redistest.Main).
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
}

// Proc is a long-running agentq process (a worker) started by Start.
type Proc struct {
	mu   sync.Mutex
	logs bytes.Buffer
	pid  int
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, set before done is closed
}

// PID is the process id.
func (p *Proc) PID() int { return p.pid }

// Exited reports whether the process has ended, and if so how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Logs returns what the process wrote so far (stdout and stderr).
func (p *Proc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// Start runs bin with args in dir with env until the test ends, then stops
// it with SIGINT and fails the test unless it exits cleanly within 20s.
// onLine, if set, sees every output line as it arrives.
func Start(t testing.TB, bin, dir string, env, args []string, onLine func(string)) *Proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Env = dir, env
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &Proc{done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			if onLine != nil {
				onLine(line)
			}
		}
		if err := sc.Err(); err != nil {
			// Keep draining, or the process would block writing its output.
			p.mu.Lock()
			p.logs.WriteString("binarytest: output no longer captured: " + err.Error() + "\n")
			p.mu.Unlock()
			_, _ = io.Copy(io.Discard, pr)
		}
	}()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.pid = cmd.Process.Pid
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
			if err := p.err; err != nil {
				t.Errorf("agentq %v did not exit cleanly on SIGINT: %v", args, err)
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("agentq %v did not stop within 20s of SIGINT", args)
		}
		_ = pw.Close()
	})
	return p
}
