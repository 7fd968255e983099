// Package binarytest builds the real agentq binary once per test process,
// for end-to-end tests that drive it as a user would, and removes it when
// the tests end.
package binarytest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
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
