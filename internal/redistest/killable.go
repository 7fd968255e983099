//go:build unix

package redistest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Killable is a redis-server a test owns alone and may kill (SIGKILL),
// freeze (SIGSTOP), thaw (SIGCONT) and restart on the same port and data
// directory, for fault tests. It persists with an append-only file
// (appendfsync everysec, as the README recommends for production) and no
// RDB snapshots, so a restart after a kill shows what AOF everysec keeps.
type Killable struct {
	// Addr is host:port; it stays the same across restarts.
	Addr string
	// URL is a redis:// URL for Addr, DB 0.
	URL string
	// Dir is the data directory holding the append-only file.
	Dir string

	port  int
	extra []string
	mu    sync.Mutex
	cmd   *exec.Cmd
}

// StartKillable starts a redis-server for t alone with AOF everysec in a
// temporary directory. extraArgs are passed to redis-server. When the test
// ends the server is thawed, killed and its directory removed.
func StartKillable(t testing.TB, extraArgs ...string) *Killable {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redistest: %s", installHint)
	}
	dir, err := os.MkdirTemp("", "agentq-redis-aof-")
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	k := &Killable{Dir: dir, extra: extraArgs}
	t.Cleanup(func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		k.killLocked()
		_ = os.RemoveAll(dir)
	})
	var lastErr error
	for try := 0; try < 5; try++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		k.port = port
		k.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		k.URL = "redis://" + k.Addr + "/0"
		if lastErr = k.start(); lastErr == nil {
			return k
		}
	}
	t.Fatalf("redistest: %v", lastErr)
	return nil
}

func (k *Killable) start() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	args := append([]string{"--port", strconv.Itoa(k.port), "--bind", "127.0.0.1", "--protected-mode", "no",
		"--dir", k.Dir, "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
		"--appendfilename", "appendonly.aof", "--databases", "16"}, k.extra...)
	cmd := exec.Command("redis-server", args...)
	cmd.Dir = k.Dir
	KillWithParent(cmd)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	go drain(stderr)
	k.cmd = cmd
	if !waitReady(k.Addr, 10*time.Second) {
		k.killLocked()
		return fmt.Errorf("redis-server on %s did not answer PING within 10s", k.Addr)
	}
	return nil
}

// PID is the running server's process id (0 when it is not running).
func (k *Killable) PID() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cmd == nil || k.cmd.Process == nil {
		return 0
	}
	return k.cmd.Process.Pid
}

// Kill sends SIGKILL: no shutdown, no final fsync. It waits for the
// process to be gone.
func (k *Killable) Kill() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.killLocked()
}

func (k *Killable) killLocked() {
	if k.cmd == nil || k.cmd.Process == nil {
		return
	}
	_ = k.cmd.Process.Signal(syscall.SIGCONT)
	_ = k.cmd.Process.Kill()
	_, _ = k.cmd.Process.Wait()
	k.cmd = nil
}

// Restart starts the server again on the same port and data directory,
// after Kill; it returns once the server answers PING (it has loaded its
// append-only file by then).
func (k *Killable) Restart(t testing.TB) {
	t.Helper()
	if k.PID() != 0 {
		t.Fatal("redistest: Restart of a running server; Kill it first")
	}
	// The port was just freed; another process could take it, which is
	// reported rather than retried on another port.
	if err := k.start(); err != nil {
		t.Fatalf("redistest: restart on %s: %v", k.Addr, err)
	}
}

// Stop freezes the server with SIGSTOP: connections stay open, nothing is
// answered.
func (k *Killable) Stop(t testing.TB) { k.signal(t, syscall.SIGSTOP) }

// Cont thaws a server frozen by Stop.
func (k *Killable) Cont(t testing.TB) { k.signal(t, syscall.SIGCONT) }

func (k *Killable) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cmd == nil || k.cmd.Process == nil {
		t.Fatalf("redistest: %v to a server that is not running", sig)
	}
	if err := k.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("redistest: %v: %v", sig, err)
	}
}
