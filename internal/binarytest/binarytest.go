// Package binarytest builds the real agentq binary once per test process,
// for end-to-end tests that drive it as a user would, and removes it when
// the tests end.
package binarytest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

var (
	once sync.Once
	dir  string
	path string
	err  error
)

// Build returns the path of an agentq binary built from ./cmd/agentq of this
// module. It is built once per test process; tests in -short mode skip.
func Build(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the agentq binary")
	}
	once.Do(func() {
		if dir, err = os.MkdirTemp("", "agentq-e2e-"); err != nil {
			return
		}
		path = filepath.Join(dir, "agentq")
		out, berr := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", path,
			"github.com/agentq/agentq/cmd/agentq").CombinedOutput()
		if berr != nil {
			err = fmt.Errorf("go build: %v\n%s", berr, out)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// Cleanup removes the built binary; call it after the tests have run (see
// redistest.Main).
func Cleanup() {
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
}

// Proc is a long-running agentq process (a worker) started by Start.
type Proc struct {
	mu   sync.Mutex
	logs bytes.Buffer
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
	p := &Proc{}
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
	}()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-done:
			if err != nil {
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
