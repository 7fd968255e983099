package queue

import (
	"context"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSplitConcurrency(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		concurrency int
		loops       int
		want        []int
	}{
		{"one loop", 10, 1, []int{10}},
		{"even", 10, 2, []int{5, 5}},
		{"remainder to the first", 10, 3, []int{4, 3, 3}},
		{"one slot each", 3, 3, []int{1, 1, 1}},
		{"large", 50, 8, []int{7, 7, 6, 6, 6, 6, 6, 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := splitConcurrency(tc.concurrency, tc.loops)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("splitConcurrency(%d, %d) = %v, want %v", tc.concurrency, tc.loops, got, tc.want)
			}
		})
	}
}

func TestDefaultLoops(t *testing.T) {
	t.Parallel()
	byCPU := min(max(2, 2*runtime.GOMAXPROCS(0)), loopsDefaultMax)
	for _, tc := range []struct {
		name        string
		concurrency int
		want        int
	}{
		{"one slot", 1, 1},
		{"two slots", 2, min(2, byCPU)},
		{"default concurrency", ConcurrencyDefault, min(ConcurrencyDefault, byCPU)},
		{"many slots", 1000, byCPU},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := LoopsDefault(tc.concurrency); got != tc.want {
				t.Fatalf("LoopsDefault(%d) = %d, want %d", tc.concurrency, got, tc.want)
			}
			cfg := WorkerConfig{Concurrency: tc.concurrency}.withDefaults()
			if err := cfg.validate(); err != nil || cfg.Loops != tc.want {
				t.Fatalf("withDefaults: loops %d, validate %v; want %d, nil", cfg.Loops, err, tc.want)
			}
		})
	}
}

func TestWorkerConfigLoopsValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  WorkerConfig
		want string
	}{
		{"more loops than slots", WorkerConfig{Concurrency: 2, Loops: 3}, "loops must not exceed concurrency (2): each loop needs at least one slot, got 3"},
		{"negative loops", WorkerConfig{Loops: -1}, "loops must be at least 1, got -1"},
		{"bad completion fold", WorkerConfig{CompletionFold: "on"}, `completion_fold must be "auto" or "off", got "on"`},
		{"fold off", WorkerConfig{CompletionFold: CompletionFoldOff, Concurrency: 4, Loops: 4}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.withDefaults().validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("validate: %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate: %v, want %q", err, tc.want)
			}
			if _, err := NewWorker(nil, NewRegistry(), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewWorker: %v, want %q", err, tc.want)
			}
		})
	}
}

// TestWorkerLoops runs a worker of three loops sharing five slots: asynq
// sees three servers of this host and pid whose concurrency sums to five,
// five handlers run at once (no one loop has more than two slots, so
// several loops took tasks), and shutdown stops every loop within one
// ShutdownTimeout although each still has a handler that ignores it.
func TestWorkerLoops(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{})
	w := b.startWorker(t, WorkerConfig{Concurrency: 5, Loops: 3})
	released := false
	defer func() {
		if !released {
			close(b.release)
		}
	}()

	waitFor(t, 10*time.Second, "three servers registered", func() bool {
		srvs, err := b.insp.Servers()
		return err == nil && len(srvs) == 3
	})
	srvs, err := b.insp.Servers()
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	var shares []int
	for _, s := range srvs {
		if s.Host != host || s.PID != os.Getpid() {
			t.Fatalf("server %s: host %q pid %d, want %q %d", s.ID, s.Host, s.PID, host, os.Getpid())
		}
		shares = append(shares, s.Concurrency)
	}
	slices.Sort(shares)
	if !slices.Equal(shares, []int{1, 2, 2}) {
		t.Fatalf("servers' concurrency %v, want [1 2 2] (sum 5)", shares)
	}
	if !strings.Contains(b.logs.String(), `"loops":3`) || !strings.Contains(b.logs.String(), `"loop_concurrency":[2,2,1]`) {
		t.Fatalf("no worker starting line with the loops: %s", b.logs.String())
	}

	ids := make([]string, 5)
	for i := range ids {
		r, err := b.client.Enqueue(context.Background(), "test.echo", []byte(`{"n":1,"mode":"ignore-ctx"}`), EnqueueOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = r.ID
	}
	waitFor(t, 10*time.Second, "five handlers running at once", func() bool {
		for _, id := range ids {
			if b.callCount(id) != 1 {
				return false
			}
		}
		return true
	})

	start := time.Now()
	w.Shutdown()
	// startWorker sets ShutdownTimeout 2s: loops shut down one after the
	// other would take 6s.
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("shutdown took %v with three loops of a 2s timeout, want one timeout", d)
	}
	close(b.release)
	released = true
	if srvs, err := b.insp.Servers(); err != nil || len(srvs) != 0 {
		t.Fatalf("after shutdown: %d servers registered (%v), want 0", len(srvs), err)
	}
}

func TestLoopsMax(t *testing.T) {
	t.Parallel()
	err := WorkerConfig{Concurrency: 1000, Loops: LoopsMax + 1}.Validate()
	if err == nil || !strings.Contains(err.Error(), "loops must be at most 64") {
		t.Fatalf("Validate with %d loops = %v, want the limit", LoopsMax+1, err)
	}
	if err := (WorkerConfig{Concurrency: 1000, Loops: LoopsMax}).Validate(); err != nil {
		t.Fatalf("Validate with %d loops = %v, want nil", LoopsMax, err)
	}
}
