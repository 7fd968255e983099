package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq/dlq"
	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
)

// TestEnqueuePoisonURL runs the command of issue 7 that overflowed the
// stack while masking the URL for its error message: a URL net/url rejects
// is refused with a clear error, a URL it accepts is enqueued, and neither
// shows the secret in it.
func TestEnqueuePoisonURL(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	env := []string{"AGENTQ_REDIS_URL=" + srv.URL, "AGENTQ_LOG_FORMAT=json"}
	tests := []struct {
		name     string
		url      string
		wantCode int
		wantErr  string
	}{
		{name: "bad escape", url: "http://a/%zz", wantCode: ExitUsage, wantErr: `does not parse: invalid URL escape "%zz"`},
		{name: "bad escape and a secret", url: "http://u:SECRET-pass@a/%zz?sig=SECRET-sig", wantCode: ExitUsage,
			wantErr: "does not parse"},
		{name: "unclosed IPv6 host", url: "http://[::1/?token=SECRET-token", wantCode: ExitUsage, wantErr: "does not parse: missing ']' in host"},
		{name: "control byte", url: "http://x/\x01?sig=SECRET-ctl%zz", wantCode: ExitUsage, wantErr: "does not parse: net/url: invalid control character in URL"},
		{name: "bad escape in a query value", url: "http://u:SECRET-pass@h/?next=http%3A%2F%2Fa%3Ab%40c%2F%zz", wantCode: ExitOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			payload, _ := json.Marshal(map[string]string{"url": tt.url})
			r := run(t, env, "", "enqueue", "http.call", "--payload", string(payload))
			if r.code != tt.wantCode || !strings.Contains(r.err, tt.wantErr) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", r.code, r.err, tt.wantCode, tt.wantErr)
			}
			if strings.Contains(r.out+r.err, "SECRET") {
				t.Errorf("output shows a secret: %q %q", r.out, r.err)
			}
		})
	}
}

// TestDLQPoisonRecord lists and shows a dead letter whose payload, headers
// and error hold URLs net/url rejects: once, masking them for output
// killed dlq list and dlq show, blocking triage of the whole store.
func TestDLQPoisonRecord(t *testing.T) {
	t.Parallel()
	b := setupDLQ(t)
	d := dlq.Death{Queue: "default", TaskID: "t-poison", Kind: "http.call", MaxAttempts: 3, Source: dlq.SourceReconciler,
		Payload: []byte(`{"url":"http://u:SECRET-pass@a/%zz?sig=SECRET-sig","headers":{"Location":"http://[::1","X-Amz-Security-Token":"SECRET-amz"}}`),
		Headers: map[string]string{"Location": "http://x/\x01?sig=SECRET-hdr%zz", "Api-Key": "SECRET-key"},
		// As a reconciler or an older version may have stored it: raw.
		Final: dlq.Attempt{At: time.Now(), Attempt: 3, TaskID: "t-poison", Class: jobs.ClassPermanent,
			Error: "POST http://a/%zz: 500: see http://[::1 and http://u:p@h/?next=http%3A%2F%2Fa%3Ab%40c%2F%zz"}}
	id, _, err := b.store.Dead(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"dlq", "list"},
		{"dlq", "list", "--json"},
		{"dlq", "show", id},
		{"dlq", "show", id, "--json"},
	} {
		r := b.run(t, args...)
		if r.code != ExitOK {
			t.Fatalf("%v: exit %d: %s", args, r.code, r.err)
		}
		if strings.Contains(r.out, "SECRET") {
			t.Errorf("%v shows a secret: %s", args, r.out)
		}
		if !strings.Contains(r.out, id) && !strings.Contains(r.out, "t-poison") {
			t.Errorf("%v does not show the record: %s", args, r.out)
		}
	}
}
