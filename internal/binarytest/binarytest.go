// Package binarytest builds the real agentq binary (or another main
// package of this module, such as a test binary with extra task kinds) once
// per test process, and runs it for end-to-end tests that drive it as a
// user would: to completion (Run), or as a long-running process the test
// may interrupt, kill, freeze and thaw (Start). It removes the binaries
// when the tests end.
package binarytest

import (
	"fmt"
	gobuild "go/build"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"testing"
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
		out, err := exec.Command(GoTool(), "build", "-o", b.path, importPath).CombinedOutput()
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

// GoTool returns the go command of the toolchain that built the tests
// (go/build's GOROOT), so a test builds binaries with the same Go.
func GoTool() string { return filepath.Join(gobuild.Default.GOROOT, "bin", "go") }
