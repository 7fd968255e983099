package queue

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestEnqueueBatch(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{})
	var in strings.Builder
	for i := 0; i < 1200; i++ {
		fmt.Fprintf(&in, `{"kind":"test.echo","payload":{"n":%d},"key":"k-%d"}`+"\n", i, i%1000)
	}
	in.WriteString("\n")                                                           // blank: skipped
	in.WriteString(`{"kind":"nope","payload":{}}` + "\n")                          // 1202: unknown kind
	in.WriteString(`{"kind":"test.echo","payload":{"n":"x"}}` + "\n")              // 1203: schema
	in.WriteString(`not json` + "\n")                                              // 1204
	in.WriteString(`{"kind":"test.echo"}` + "\n")                                  // 1205: no payload
	in.WriteString(`{"kind":"test.echo","payload":{"n":1},"tiemout":"1s"}` + "\n") // 1206: typo
	in.WriteString(`{"kind":"test.echo","payload":{"n":1},"max_retry":2,"timeout":"5s","queue":"other"}` + "\n")
	var progress []int
	sum, err := b.client.EnqueueBatch(context.Background(), strings.NewReader(in.String()), func(done int) { progress = append(progress, done) })
	if err != nil {
		t.Fatal(err)
	}
	if sum.Lines != 1206 || sum.Enqueued != 1001 || sum.Duplicates != 200 {
		t.Fatalf("summary: lines=%d enqueued=%d dups=%d", sum.Lines, sum.Enqueued, sum.Duplicates)
	}
	wantLines := []int{1202, 1203, 1204, 1205, 1206}
	if len(sum.Rejected) != len(wantLines) {
		t.Fatalf("rejected = %+v", sum.Rejected)
	}
	for i, r := range sum.Rejected {
		if r.Line != wantLines[i] || r.Error == "" {
			t.Fatalf("rejection %d = %+v, want line %d", i, r, wantLines[i])
		}
	}
	if !strings.Contains(sum.Rejected[4].Error, "tiemout") {
		t.Fatalf("typo not named: %q", sum.Rejected[4].Error)
	}
	if got := queueSize(t, b, "default"); got != 1000 {
		t.Fatalf("default queue = %d, want 1000", got)
	}
	if got := queueSize(t, b, "other"); got != 1 {
		t.Fatalf("other queue = %d, want 1", got)
	}
	if len(progress) < 2 || progress[len(progress)-1] != 1206 {
		t.Fatalf("progress = %v", progress)
	}
	// Running the same batch again enqueues nothing new.
	sum2, err := b.client.EnqueueBatch(context.Background(), strings.NewReader(in.String()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum2.Enqueued != 1 || sum2.Duplicates != 1200 {
		t.Fatalf("second run: enqueued=%d dups=%d (only the unkeyed line is new)", sum2.Enqueued, sum2.Duplicates)
	}
}

func TestParseBatchLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		line, want string
	}{
		{`{"payload":{}}`, `"kind" is missing`},
		{`{"kind":"k"}`, `"payload" is missing`},
		{`{"kind":"k","payload":null}`, `"payload" is missing`},
		{`{"kind":"k","payload":{},"max_retry":-1}`, `"max_retry" must not be negative`},
		{`{"kind":"k","payload":{},"in":"soon"}`, `"in": "soon" is not a duration`},
		{`[1]`, `a batch line is one JSON object (a task), got array`},
	}
	for _, tt := range tests {
		_, _, _, err := ParseBatchLine([]byte(tt.line))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseBatchLine(%s) = %v, want %q", tt.line, err, tt.want)
		}
	}
	kind, payload, o, err := ParseBatchLine([]byte(`{"kind":"k","payload":{"a":1},"key":"x","max_retry":0,"workflow":"w","run_id":"r"}`))
	if err != nil || kind != "k" || string(payload) != `{"a":1}` || o.Key != "x" || o.MaxAttempts != 1 || o.Workflow != "w" || o.RunID != "r" {
		t.Fatalf("parsed %q %s %+v %v", kind, payload, o, err)
	}
	// Durations take days, as everywhere in agentq.
	_, _, o, err = ParseBatchLine([]byte(`{"kind":"k","payload":{},"in":"1d12h","timeout":"90s"}`))
	if err != nil || o.In != 36*time.Hour || o.Timeout != 90*time.Second {
		t.Fatalf("days: %+v %v", o, err)
	}
}

func TestEnqueueBatchOversizedLineIsRejectedNotFatal(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{MaxPayloadBytes: 1024})
	in := `{"kind":"test.echo","payload":{"n":1}}` + "\n" +
		`{"kind":"test.echo","payload":{"n":1,"mode":"` + strings.Repeat("x", 200<<10) + `"}}` + "\n" +
		`{"kind":"test.echo","payload":{"n":2}}`
	sum, err := b.client.EnqueueBatch(context.Background(), strings.NewReader(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Lines != 3 || sum.Enqueued != 2 || len(sum.Rejected) != 1 || sum.Rejected[0].Line != 2 || !strings.Contains(sum.Rejected[0].Error, "longer than") {
		t.Fatalf("summary = %+v", sum)
	}
}
