package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/agentq/agentq/internal/logbuf"
	"github.com/agentq/agentq/queue"
)

// lastLine is the last line of out: the summary of enqueue --batch --json.
func lastLine(out string) string {
	out = strings.TrimSuffix(out, "\n")
	return out[strings.LastIndex(out, "\n")+1:]
}

func TestItemBarOffWhenNotATerminal(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if bar := itemBar(&buf, false, 10, "enqueue", "tasks"); bar != nil {
		t.Fatalf("a bar when not on a terminal: %v", bar)
	}
}

// TestItemBarCountsItems drives the bar on a writer taken for a terminal:
// it counts items with their unit and rate, never bytes, with a time left
// only when the total is known.
func TestItemBarCountsItems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		total int64
		want  []string
	}{
		{"known total", 300, []string{"replay", "0/300", "records/"}},
		{"unknown total", -1, []string{"replay", "0/-", "records/"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The bar of an unknown total redraws from a goroutine of its own.
			var buf logbuf.Buffer
			bar := itemBar(&buf, true, tc.total, "replay", "records")
			if bar == nil {
				t.Fatal("no bar on a terminal")
			}
			for range 256 {
				if err := bar.Add(1); err != nil {
					t.Fatal(err)
				}
			}
			// It drew its start; the throttle holds back the items.
			st := bar.State()
			if tc.total > 0 && st.CurrentNum != 256 {
				t.Fatalf("counted %d items, want 256", st.CurrentNum)
			}
			_ = bar.Exit()
			out := buf.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("bar output lacks %q: %q", w, out)
				}
			}
			for _, unwanted := range []string{" B/s", "kB", " B ", "MB"} {
				if strings.Contains(out, unwanted) {
					t.Errorf("bar output counts bytes (%q): %q", unwanted, out)
				}
			}
			// A time left ("[0s:2s]") only with a known total.
			if hasETA := strings.Contains(out, ":"); hasETA != (tc.total > 0) {
				t.Errorf("time left shown = %v with total %d: %q", hasETA, tc.total, out)
			}
		})
	}
}

func TestCountBatchLines(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 200<<10)
	tests := []struct {
		name string
		in   string
		want int64
	}{
		{"empty", "", 0},
		{"one without newline", `{}`, 1},
		{"blank lines skipped", "{}\n\n  \t\r\n{}\n", 2},
		{"CRLF", "{}\r\n{}\r\n", 2},
		{"line longer than the buffer", long + "\n{}\n" + long, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := countBatchLines(strings.NewReader(tc.in))
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

// TestWriteBatchJSON: one object per line done, in line order, then the
// summary; lines from where the batch stopped have no object.
func TestWriteBatchJSON(t *testing.T) {
	t.Parallel()
	sum := queue.BatchSummary{
		Lines: 5, Enqueued: 1, Duplicates: 1, NotDone: 1, StoppedAt: 5,
		Rejected: []queue.Rejection{{Line: 1, Error: "bad"}, {Line: 4, Error: "worse"}},
		Results: []queue.BatchResult{
			{Line: 2, Result: queue.Result{ID: "t2", Kind: "noop", Queue: "default"}},
			{Line: 3, Result: queue.Result{ID: "t1", Kind: "noop", Queue: "default", Duplicate: true, Key: "k"}},
		},
	}
	var buf bytes.Buffer
	if err := writeBatchJSON(&buf, sum, errors.New("line 5: boom"), []string{"w"}); err != nil {
		t.Fatal(err)
	}
	want := `{"line":1,"status":"rejected","error":"bad"}
{"line":2,"status":"enqueued","id":"t2","kind":"noop","queue":"default"}
{"line":3,"status":"duplicate","id":"t1","kind":"noop","queue":"default","key":"k"}
{"line":4,"status":"rejected","error":"worse"}
{"summary":true,"lines":5,"enqueued":1,"duplicates":1,"rejected":[{"line":1,"error":"bad"},{"line":4,"error":"worse"}],"stopped_at":5,"not_done":1,"error":"line 5: boom","warnings":["w"]}
`
	if got := buf.String(); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

// FuzzCountBatchLines: the bar's total is the number of lines holding
// anything but JSON whitespace, for every input.
func FuzzCountBatchLines(f *testing.F) {
	f.Add("{}\n\n {} \r\n")
	f.Add("\t\r\n\n")
	f.Add(strings.Repeat("x", 70<<10) + "\n{}")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := countBatchLines(strings.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		var want int64
		for _, l := range strings.Split(in, "\n") {
			if strings.Trim(l, " \t\r") != "" {
				want++
			}
		}
		if got != want {
			t.Fatalf("counted %d lines of %q, want %d", got, in, want)
		}
	})
}
