package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/agentq/agentq/internal/logbuf"
	"github.com/agentq/agentq/internal/redistest"
)

func TestConnectBackoff(t *testing.T) {
	t.Parallel()
	lo := func(int64) int64 { return 0 }
	hi := func(n int64) int64 { return n - 1 }
	tests := []struct {
		name    string
		attempt int
		randN   func(int64) int64
		want    time.Duration
	}{
		{name: "first try, lowest draw", attempt: 1, randN: lo, want: 125 * time.Millisecond},
		{name: "first try, highest draw", attempt: 1, randN: hi, want: 250 * time.Millisecond},
		{name: "doubles", attempt: 3, randN: hi, want: time.Second},
		{name: "capped", attempt: 12, randN: hi, want: 30 * time.Second},
		{name: "capped, lowest draw", attempt: 40, randN: lo, want: 15 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := connectBackoff(tc.attempt, 250*time.Millisecond, 30*time.Second, tc.randN); got != tc.want {
				t.Fatalf("connectBackoff(%d) = %v, want %v", tc.attempt, got, tc.want)
			}
		})
	}
}

func TestConnectWaitRetriesUntilRedisAnswers(t *testing.T) {
	t.Parallel()
	port := redistest.FreePort(t)
	dir := t.TempDir()
	var logs logbuf.Buffer
	log := zerolog.New(&logs)
	var waits []time.Duration
	cfg := RedisConfig{URL: fmt.Sprintf("redis://:s3cret-pw@127.0.0.1:%d/0", port)}
	wc := WaitConfig{
		Logger: &log,
		RandN:  func(n int64) int64 { return n - 1 },
		After: func(d time.Duration) <-chan time.Time {
			waits = append(waits, d)
			if len(waits) == 3 {
				// Redis comes up while the third wait runs.
				redistest.StartOnPort(t, port, dir, "--requirepass", "s3cret-pw")
			}
			ch := make(chan time.Time, 1)
			ch <- time.Time{}
			return ch
		},
	}
	rdb, err := cfg.ConnectWait(context.Background(), wc)
	if err != nil {
		t.Fatalf("ConnectWait: %v", err)
	}
	defer rdb.Close()
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second}
	if fmt.Sprint(waits) != fmt.Sprint(want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	out := logs.String()
	if strings.Contains(out, "s3cret-pw") {
		t.Fatalf("password in logs:\n%s", out)
	}
	for _, s := range []string{`"attempt":1`, `"attempt":3`, `"next_try_in_ms":1000`, `"redis":"redis://:****@127.0.0.1:`, `"message":"waiting for redis"`, `"message":"redis answered"`} {
		if !strings.Contains(out, s) {
			t.Errorf("logs lack %s:\n%s", s, out)
		}
	}
}

func TestConnectWaitStopsWhenCancelled(t *testing.T) {
	t.Parallel()
	port := redistest.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	tries := 0
	wc := WaitConfig{After: func(time.Duration) <-chan time.Time {
		tries++
		ch := make(chan time.Time, 1)
		if tries == 2 {
			cancel() // the second wait never fires: only ctx ends it
			return ch
		}
		ch <- time.Time{}
		return ch
	}}
	_, err := RedisConfig{URL: fmt.Sprintf("redis://127.0.0.1:%d/0", port)}.ConnectWait(ctx, wc)
	if !errors.Is(err, context.Canceled) || tries != 2 {
		t.Fatalf("err = %v after %d waits, want context.Canceled after 2", err, tries)
	}
}

func TestConnectWaitPermanentErrorsReturnAtOnce(t *testing.T) {
	t.Parallel()
	srv := redistest.StartExclusive(t, "--requirepass", "right-pw")
	tests := []struct {
		name string
		url  string
		want string
	}{
		{name: "wrong password", url: "redis://:wrong-pw@" + srv.Addr + "/0", want: "WRONGPASS"},
		{name: "no password", url: "redis://" + srv.Addr + "/0", want: "NOAUTH"},
		{name: "wrong user", url: "redis://nobody:right-pw@" + srv.Addr + "/0", want: "WRONGPASS"},
		{name: "unknown db", url: "redis://:right-pw@" + srv.Addr + "/99", want: "DB index"},
		{name: "bad url", url: "redis://h:1/x", want: `invalid database number: "x"`},
		{name: "bad scheme", url: "http://h:1/", want: "unsupported scheme"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			wc := WaitConfig{After: func(time.Duration) <-chan time.Time {
				t.Error("a permanent error was retried")
				ch := make(chan time.Time, 1)
				ch <- time.Time{}
				return ch
			}}
			_, err := RedisConfig{URL: tc.url}.ConnectWait(context.Background(), wc)
			var ce *ConnectError
			if !errors.As(err, &ce) || !ce.Permanent {
				t.Fatalf("err = %v (%T), want a permanent *ConnectError", err, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %q, want it to mention %q", err, tc.want)
			}
			for _, pw := range []string{"wrong-pw", "right-pw"} {
				if strings.Contains(err.Error(), pw) {
					t.Fatalf("password in error: %q", err)
				}
			}
		})
	}
}

func TestPermanentConnectError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "refused", err: errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), want: false},
		{name: "loading", err: errors.New("LOADING Redis is loading the dataset in memory"), want: false},
		{name: "too many clients", err: errors.New("ERR max number of clients reached"), want: false},
		{name: "timeout", err: context.DeadlineExceeded, want: false},
		{name: "wrongpass", err: errors.New("WRONGPASS invalid username-password pair or user is disabled."), want: true},
		{name: "noauth", err: errors.New("NOAUTH Authentication required."), want: true},
		{name: "noperm", err: errors.New("NOPERM this user has no permissions to run the 'ping' command"), want: true},
		{name: "db", err: errors.New("ERR DB index is out of range"), want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := permanentConnectError(tc.err); got != tc.want {
				t.Fatalf("permanentConnectError(%q) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
