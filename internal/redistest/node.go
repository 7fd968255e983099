//go:build unix

package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Node is one redis-server (or redis-sentinel) process of a Cluster or a
// Sentinel setup. Kill stops it with SIGKILL; the test's cleanup kills
// what is still running and removes its directory.
type Node struct {
	// Addr is host:port.
	Addr string

	port int
	dir  string
	mu   sync.Mutex
	cmd  *exec.Cmd
}

// Kill sends SIGKILL (no shutdown, no final write) and waits for the
// process to be gone. Killing a dead node does nothing.
func (n *Node) Kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	_, _ = n.cmd.Process.Wait()
	n.cmd = nil
}

// Alive reports whether the node's process runs (was not killed).
func (n *Node) Alive() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// client is a plain client for the node alone, for the helpers' own
// commands.
func (n *Node) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: n.Addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second,
		MaxRetries: -1, PoolSize: 1})
}

// do runs one command on the node alone.
func (n *Node) do(ctx context.Context, args ...any) (any, error) {
	c := n.client()
	defer c.Close()
	return c.Do(ctx, args...).Result()
}

// info returns field of INFO section on the node ("" when absent).
func (n *Node) info(ctx context.Context, section, field string) (string, error) {
	c := n.client()
	defer c.Close()
	s, err := c.Info(ctx, section).Result()
	if err != nil {
		return "", err
	}
	return infoField(s, field), nil
}

func infoField(info, field string) string {
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), field+":"); ok {
			return v
		}
	}
	return ""
}

// group is the processes of one Cluster or Sentinel setup.
type group struct {
	bin   string
	nodes []*Node
}

// startNode starts a redis-server on a free port pair (port and
// port+10,000, the cluster bus, both free and below 55,000) in a directory
// of its own, writes conf (if any) there as node.conf and passes it first,
// then args. The node is killed and its directory removed when t ends.
func (g *group) startNode(t testing.TB, conf string, args ...string) *Node {
	t.Helper()
	var lastErr error
	for try := 0; try < 10; try++ {
		port, err := pairPort()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		dir, err := os.MkdirTemp("", "agentq-redis-node-")
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		n := &Node{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), port: port, dir: dir}
		t.Cleanup(func() {
			n.Kill()
			_ = os.RemoveAll(dir)
		})
		if lastErr = g.launch(n, conf, args); lastErr == nil {
			g.nodes = append(g.nodes, n)
			return n
		}
	}
	t.Fatalf("redistest: %v", lastErr)
	return nil
}

func (g *group) launch(n *Node, conf string, args []string) error {
	var full []string
	if conf != "" {
		path := n.dir + "/node.conf"
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			return err
		}
		full = append(full, path)
	}
	full = append(full, "--port", strconv.Itoa(n.port), "--bind", "127.0.0.1", "--protected-mode", "no",
		"--dir", n.dir)
	full = append(full, args...)
	cmd := exec.Command(g.bin, full...)
	cmd.Dir = n.dir
	KillWithParent(cmd)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", g.bin, err)
	}
	go drain(stdout)
	n.mu.Lock()
	n.cmd = cmd
	n.mu.Unlock()
	if !waitReady(n.Addr, 10*time.Second) {
		n.Kill()
		return fmt.Errorf("%s on %s did not answer PING within 10s", g.bin, n.Addr)
	}
	return nil
}

var (
	pairMu    sync.Mutex
	pairTaken = map[int]bool{}
)

// pairPort returns a port p in [20000, 45000) with p and p+10,000 free on
// loopback now and not handed out before by this process. Below 55,000 so
// that the cluster bus port (p+10,000) is a valid port outside most
// ephemeral ranges' top.
func pairPort() (int, error) {
	pairMu.Lock()
	defer pairMu.Unlock()
	for try := 0; try < 200; try++ {
		p := 20000 + rand.IntN(25000)
		if pairTaken[p] || pairTaken[p+10000] || pairTaken[p-10000] {
			continue
		}
		if !portFree(p) || !portFree(p+10000) {
			continue
		}
		pairTaken[p] = true
		return p, nil
	}
	return 0, errors.New("no free port pair (p, p+10000) below 55000 after 200 tries")
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// waitUntil polls cond every 50ms until it is true or within passed; it
// returns the last error cond gave.
func waitUntil(within time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(within)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			if last == nil {
				last = errors.New("condition not met")
			}
			return fmt.Errorf("after %v: %w", within, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readLines returns the non-empty lines of s.
func readLines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}
