package dlq

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/agentq/agentq/jobs"
)

// TestReplayHint: a dead letter's warning and alert carry the replay
// command, unless Config.NoReplayHint leaves it out (agentq dev --exit,
// whose Redis is gone when it ends); the record's id is given either way.
func TestReplayHint(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		noHint bool
		want   string
	}{
		{"with the command", false, "mybin --redis-url redis://h:1/0 dlq replay 1"},
		{"NoReplayHint", true, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, Config{Command: "mybin --redis-url redis://h:1/0", NoReplayHint: tt.noHint})
			st := jobs.Step{TaskID: "t1", Queue: "default", Kind: "test.step", Attempt: 1, MaxAttempts: 3}
			res := jobs.Result{Outcome: jobs.OutcomeDead, Class: jobs.ClassPermanent, Err: errors.New("bad request")}
			b.store.Observer().Observe(context.Background(), &st, &res)
			lines := b.logs.lines("dead letter recorded")
			if len(lines) != 1 || lines[0]["dlq_id"] != "1" {
				t.Fatalf("warnings %v, want one naming dlq_id 1", lines)
			}
			msg, _ := lines[0]["message"].(string)
			replay, _ := lines[0]["replay"].(string)
			alerts := b.alerts.all()
			if len(alerts) != 1 || alerts[0].ID != "1" {
				t.Fatalf("alerts %+v, want one for record 1", alerts)
			}
			if replay != tt.want || alerts[0].Replay != tt.want {
				t.Errorf("replay field %q, alert's %q, want %q", replay, alerts[0].Replay, tt.want)
			}
			if has := strings.Contains(msg, "replay with:"); has != (tt.want != "") || (tt.want != "" && !strings.HasSuffix(msg, tt.want)) {
				t.Errorf("message %q, want the command %q", msg, tt.want)
			}
			if has := strings.Contains(alerts[0].Text, "Replay:"); has != (tt.want != "") {
				t.Errorf("alert text %q, want the command %q", alerts[0].Text, tt.want)
			}
		})
	}
}
