//go:build unix

package binarytest

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTB records what Start's cleanup reports, so that a test can run the
// cleanup itself and check whether it would have failed the test.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	errs     []string
}

func (f *fakeTB) Helper()             {}
func (f *fakeTB) Cleanup(fn func())   { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Logf(string, ...any) {}
func (f *fakeTB) Failed() bool        { f.mu.Lock(); defer f.mu.Unlock(); return len(f.errs) > 0 }
func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

func (f *fakeTB) endTest() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// script is a shell loop that prints ready, then exits with onInt on SIGINT.
func script(onInt int) []string {
	return []string{"-c", fmt.Sprintf(`trap 'echo bye; exit %d' INT; echo ready; while :; do sleep 0.05; done`, onInt)}
}

func TestStartCleanup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		onInt   int
		o       Options
		prepare func(t *testing.T, p *Proc)
		wantErr string // "" for a cleanup that does not fail the test
	}{
		{name: "clean exit on SIGINT", onInt: 0},
		{name: "unclean exit fails the test", onInt: 3, wantErr: "did not exit cleanly on SIGINT: exit status 3"},
		{name: "unclean exit allowed", onInt: 3, o: Options{AllowUncleanExit: true}},
		{name: "stopped process is thawed first", onInt: 0, prepare: func(t *testing.T, p *Proc) { p.Stop(t) }},
		{name: "killed process is not held to a clean exit", onInt: 0, prepare: func(t *testing.T, p *Proc) { p.Kill(t) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ft := &fakeTB{TB: t}
			tc.o.StopWithin = 5 * time.Second
			p := Start(ft, "/bin/sh", script(tc.onInt), tc.o)
			WaitFor(t, 10*time.Second, "ready", func() bool { return strings.Contains(p.Logs(), "ready\n") })
			if tc.prepare != nil {
				tc.prepare(t, p)
			}
			ft.endTest()
			if exited, _ := p.Exited(); !exited {
				t.Fatal("the process still runs after the cleanup")
			}
			got := strings.Join(ft.errs, "; ")
			if (tc.wantErr == "") != (got == "") || !strings.Contains(got, tc.wantErr) {
				t.Fatalf("cleanup reported %q, want %q", got, tc.wantErr)
			}
		})
	}
}

func TestProcSignalsAndOutput(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	p := Start(t, "/bin/sh", script(0), Options{Name: "loop", OnLine: func(l string) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, l)
	}})
	WaitFor(t, 10*time.Second, "ready", func() bool { return len(p.Lines()) == 1 })
	p.Stop(t)
	p.Cont(t)
	p.Interrupt(t)
	exited, err := p.Wait(10 * time.Second)
	if !exited || err != nil {
		t.Fatalf("after SIGINT: exited %v, err %v; want a clean exit", exited, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(p.Lines(), ","); got != "ready,bye" || p.Logs() != "ready\nbye\n" || strings.Join(seen, ",") != got {
		t.Fatalf("Lines %q, Logs %q, OnLine saw %q; want ready then bye", p.Lines(), p.Logs(), seen)
	}
	if p.Name() != "loop" || p.PID() <= 0 {
		t.Fatalf("Name %q, PID %d", p.Name(), p.PID())
	}
}

func TestProcKill(t *testing.T) {
	t.Parallel()
	p := Start(t, "/bin/sh", script(0), Options{})
	p.Kill(t)
	exited, err := p.Exited()
	if !exited || err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("after Kill: exited %v, err %v; want killed", exited, err)
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		args             []string
		o                Options
		wantOut, wantErr string
		wantCode         int
	}{
		{name: "stdin, stdout, stderr", args: []string{"-c", `cat; echo oops >&2`}, o: Options{Stdin: "in"}, wantOut: "in", wantErr: "oops\n"},
		{name: "exit code", args: []string{"-c", "exit 7"}, wantCode: 7},
		{name: "env and dir", args: []string{"-c", `printf "%s %s" "$X" "$PWD"`}, o: Options{Env: []string{"X=y"}, Dir: "/"}, wantOut: "y /"},
		{name: "killed at timeout", args: []string{"-c", "exec sleep 10"}, o: Options{Timeout: 100 * time.Millisecond}, wantCode: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := Run(t, "/bin/sh", tc.args, tc.o)
			if r.Stdout != tc.wantOut || r.Stderr != tc.wantErr || r.Code != tc.wantCode || r.Took <= 0 {
				t.Fatalf("got %+v, want stdout %q stderr %q code %d", r, tc.wantOut, tc.wantErr, tc.wantCode)
			}
		})
	}
}

func TestEnviron(t *testing.T) {
	t.Setenv("AGENTQ_FROM_OUTSIDE", "1")
	t.Setenv("OTHER_SETTING", "2")
	got := strings.Join(Environ("AGENTQ_REDIS_URL=redis://x"), "\n")
	if strings.Contains(got, "AGENTQ_FROM_OUTSIDE") || !strings.Contains(got, "OTHER_SETTING=2") || !strings.HasSuffix(got, "\nAGENTQ_REDIS_URL=redis://x") {
		t.Fatalf("Environ = %q; want outside AGENTQ_* dropped, the rest kept, extra last", got)
	}
}
