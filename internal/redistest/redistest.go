// Package redistest gives tests a real, isolated Redis: a throwaway
// redis-server on a free loopback port per test package (one DB index per
// test), stopped when the package's tests end. It never touches a Redis it
// did not start. miniredis is not a substitute for Redis in tests of Redis
// behaviour.
package redistest

import (
	"bufio"
	"context"
	"fmt"
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

const installHint = "redis-server not found on PATH: the tests start their own; install it (Debian/Ubuntu: apt-get install -y redis-server; macOS: brew install redis)"

// Server is one Redis a test may use exclusively.
type Server struct {
	// Addr is host:port.
	Addr string
	// DB is the database index reserved for the test.
	DB int
	// URL is a redis:// URL for Addr and DB.
	URL string
}

// Client returns a go-redis client for s, closed when the test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DB: s.DB})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Options returns go-redis options for s.
func (s *Server) Options() *redis.Options { return &redis.Options{Addr: s.Addr, DB: s.DB} }

var (
	mu      sync.Mutex
	servers []*proc
	nextDB  = map[string]int{}
)

type proc struct {
	addr string
	cmd  *exec.Cmd
	dir  string
}

// Start returns a Redis for t with a DB index of its own, flushed. Up to 16
// tests share one redis-server process (one per DB index); more start
// another. Processes are stopped by Main's cleanup when the package's tests
// end, and by the test's own cleanup as a fallback.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := Reserve()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return s
}

// Reserve is Start for code without a testing.TB, such as TestMain giving
// a package's examples their Redis: a DB index of its own, flushed, on a
// server Main stops.
func Reserve() (*Server, error) {
	addr, db, err := reserve()
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: addr, DB: db, URL: fmt.Sprintf("redis://%s/%d", addr, db)}
	c := redis.NewClient(s.Options())
	defer c.Close()
	if err := c.FlushDB(context.Background()).Err(); err != nil {
		return nil, fmt.Errorf("flush db %d at %s: %w", db, addr, err)
	}
	return s, nil
}

// StartExclusive starts a redis-server for t alone (for tests that stop it,
// restart it or read server-wide stats). extraArgs are passed to
// redis-server. It is stopped when the test ends.
func StartExclusive(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	p, err := spawn(extraArgs...)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(p.stop)
	return &Server{Addr: p.addr, URL: "redis://" + p.addr + "/0"}
}

func reserve() (addr string, db int, err error) {
	mu.Lock()
	defer mu.Unlock()
	for _, p := range servers {
		if n := nextDB[p.addr]; n < 16 {
			nextDB[p.addr] = n + 1
			return p.addr, n, nil
		}
	}
	p, err := spawn()
	if err != nil {
		return "", 0, err
	}
	servers = append(servers, p)
	nextDB[p.addr] = 1
	return p.addr, 0, nil
}

// Stop stops every shared redis-server this package started. Call it from
// TestMain after m.Run; on Linux processes also die with the test binary
// (parent-death signal), so a crashed test leaves no server behind.
func Stop() {
	mu.Lock()
	defer mu.Unlock()
	for _, p := range servers {
		p.stop()
	}
	servers = nil
}

// Main runs the tests, stops the servers they started and runs cleanups;
// use it as `func TestMain(m *testing.M) { redistest.Main(m) }`.
func Main(m *testing.M, cleanups ...func()) {
	code := m.Run()
	Stop()
	for _, c := range cleanups {
		c()
	}
	os.Exit(code)
}

func spawn(extraArgs ...string) (*proc, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("%s", installHint)
	}
	dir, err := os.MkdirTemp("", "agentq-redis-")
	if err != nil {
		return nil, err
	}
	for try := 0; try < 5; try++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		p, err := launch(bin, port, dir, extraArgs)
		if err != nil {
			return nil, err
		}
		if waitReady(p.addr, 5*time.Second) {
			return p, nil
		}
		p.kill()
	}
	_ = os.RemoveAll(dir)
	return nil, fmt.Errorf("redis-server did not answer PING on a free loopback port after 5 tries")
}

func launch(bin string, port int, dir string, extraArgs []string) (*proc, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--databases", "16", "--protected-mode", "no"}, extraArgs...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = nil
	KillWithParent(cmd)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	go drain(stderr)
	return &proc{addr: addr, cmd: cmd, dir: dir}, nil
}

// FreePort returns a loopback TCP port that nothing listens on now, for a
// test that points agentq at a Redis that is not there yet.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return port
}

// StartOnPort starts a redis-server for t alone on 127.0.0.1:port with its
// data in dir (for tests where Redis appears late on a known address, or
// comes back where it was after a crash; extraArgs as for StartExclusive,
// e.g. "--appendonly", "yes"). kill stops it at once with SIGKILL; it is
// killed when the test ends in any case, and dir is left to the caller.
func StartOnPort(t testing.TB, port int, dir string, extraArgs ...string) (s *Server, kill func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: %s", installHint)
	}
	p, err := launch(bin, port, dir, extraArgs)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(p.kill)
	if !waitReady(p.addr, 10*time.Second) {
		p.kill()
		t.Fatalf("redistest: redis-server on %s did not answer PING within 10s", p.addr)
	}
	return &Server{Addr: p.addr, URL: "redis://" + p.addr + "/0"}, p.kill
}

func drain(r interface{ Read([]byte) (int, error) }) {
	if r == nil {
		return
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
	}
}

func waitReady(addr string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, _ = c.Write([]byte("PING\r\n"))
			line, _ := bufio.NewReader(c).ReadString('\n')
			_ = c.Close()
			// A server started with --requirepass answers NOAUTH: up too.
			if strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH") {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func (p *proc) kill() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		_, _ = p.cmd.Process.Wait()
	}
}

func (p *proc) stop() {
	p.kill()
	_ = os.RemoveAll(p.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
