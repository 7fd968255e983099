package dlq

import (
	"context"
	"fmt"
	"time"

	"github.com/agentq/agentq/jobs"
)

// Alert is the JSON posted for a dead letter: concise, no payload.
type Alert struct {
	// Event is always "dead_letter".
	Event string `json:"event"`
	// Text is a one-line summary for chat webhooks.
	Text     string     `json:"text"`
	ID       string     `json:"id"`
	Queue    string     `json:"queue"`
	Kind     string     `json:"kind"`
	Workflow string     `json:"workflow,omitempty"`
	RunID    string     `json:"run_id,omitempty"`
	Step     string     `json:"step,omitempty"` // the run step; empty when none
	TaskID   string     `json:"task_id"`
	Class    jobs.Class `json:"class"`
	Error    string     `json:"error"`
	Attempt  int        `json:"attempt"`
	FailedAt time.Time  `json:"failed_at"`
	// Replay is the command that replays the dead letter; empty with
	// Config.NoReplayHint.
	Replay string `json:"replay_command"`
}

// Observer returns the capture observer (queue.WorkerConfig.Observers). Per
// decided attempt:
//
//   - success of a first attempt that is no replay: nothing, no Redis call;
//   - success of a retry or a replay: one script that drops the task's
//     pending attempts and resolves the record it settles;
//   - retry: the attempt (time, class, redacted message) is appended to the
//     task's pending attempts;
//   - dead: the record is created, or for a replay appended to and dead
//     again, atomically; one warning line names the run and the replay
//     command, and an alert is sent without blocking;
//   - snooze, abandoned: nothing.
//
// A failed write is logged and never changes the step's outcome; a death
// that was not written is recorded later by the reconciler from asynq's
// archive. Error text is masked with the store's Redactor (and capped at
// MaxErrorBytes), whatever the worker masks in the Result's Message.
func (s *Store) Observer() jobs.Observer {
	return jobs.ObserverFunc(func(ctx context.Context, st *jobs.Step, r *jobs.Result) {
		switch r.Outcome {
		case jobs.OutcomeSuccess:
			if st.Attempt > 1 || st.ReplayOf != "" {
				s.captureSuccess(ctx, st)
			}
		case jobs.OutcomeRetry:
			wctx, cancel := writeCtx(ctx)
			werr := s.AddAttempt(wctx, st.Queue, st.TaskID, s.attempt(st, r))
			cancel()
			if werr != nil {
				s.log.Error().Str("task_id", st.TaskID).Str("run_id", st.RunID).Str("step", st.Name).Int("attempt", st.Attempt).
					Err(werr).Msg("failed attempt not recorded in the dead-letter history")
			}
		case jobs.OutcomeDead:
			s.captureDeath(ctx, st, r)
		}
	})
}

func (s *Store) attempt(st *jobs.Step, r *jobs.Result) Attempt {
	return Attempt{At: s.cfg.Now(), Attempt: st.Attempt, TaskID: st.TaskID, Class: r.Class, Error: s.redact(r.Err.Error())}
}

func (s *Store) captureSuccess(ctx context.Context, st *jobs.Step) {
	wctx, cancel := writeCtx(ctx)
	defer cancel()
	id, err := s.Succeeded(wctx, st.Queue, st.TaskID, st.ReplayOf)
	switch {
	case err != nil:
		s.log.Error().Str("task_id", st.TaskID).Str("run_id", st.RunID).Str("replay_of", st.ReplayOf).
			Err(err).Msg("success not recorded in the dead-letter store")
	case id != "":
		s.log.Info().Str("dlq_id", id).Str("task_id", st.TaskID).Str("run_id", st.RunID).
			Msg("dead letter resolved")
	}
}

func (s *Store) captureDeath(ctx context.Context, st *jobs.Step, r *jobs.Result) {
	final := s.attempt(st, r)
	class := r.Class
	wctx, cancel := writeCtx(ctx)
	defer cancel()
	id, mode, werr := s.Dead(wctx, Death{
		Queue: st.Queue, TaskID: st.TaskID, Kind: st.Kind, Workflow: st.Workflow, RunID: st.RunID, Step: st.Name, Key: st.Key,
		ReplayOf: st.ReplayOf, Payload: st.Payload, Headers: st.Headers, MaxAttempts: st.MaxAttempts,
		Final: final, Source: SourceWorker,
	})
	if werr != nil {
		s.log.Error().Str("task_id", st.TaskID).Str("run_id", st.RunID).Str("step", st.Name).Str("workflow", st.Workflow).
			Str("kind", st.Kind).Str("queue", st.Queue).Str("class", string(class)).Err(werr).
			Msg("dead letter not recorded; the reconciler will record it from asynq's archive")
		return
	}
	cmd, msg := "", "dead letter recorded"
	if mode == modeAppended {
		msg = "dead letter dead again"
	}
	text := fmt.Sprintf("agentq: %s %s (task %s, run %s%s) died on attempt %d: %s.",
		st.Kind, verbNoun(mode), st.TaskID, orNone(st.RunID), stepPart(st.Name), st.Attempt, final.Error)
	if !s.cfg.NoReplayHint {
		cmd = s.ReplayCommand(id)
		msg += "; replay with: " + cmd
		text += " Replay: " + cmd
	}
	ev := s.log.Warn().Str("dlq_id", id).Str("task_id", st.TaskID).Str("run_id", st.RunID).Str("step", st.Name).Str("workflow", st.Workflow).
		Str("kind", st.Kind).Str("queue", st.Queue).Str("class", string(class)).Int("attempt", st.Attempt).
		Str("error", final.Error)
	if cmd != "" {
		ev = ev.Str("replay", cmd)
	}
	ev.Msg(msg)
	if s.cfg.Alerter != nil {
		s.cfg.Alerter.Send(Alert{
			Event: "dead_letter",
			Text:  text,
			ID:    id, Queue: st.Queue, Kind: st.Kind, Workflow: st.Workflow, RunID: st.RunID, Step: st.Name, TaskID: st.TaskID,
			Class: class, Error: final.Error, Attempt: st.Attempt, FailedAt: final.At.UTC(), Replay: cmd,
		})
	}
}

func verbNoun(mode string) string {
	if mode == modeAppended {
		return "replay"
	}
	return "step"
}

// stepPart names a run step in the alert's text; empty when none.
func stepPart(step string) string {
	if step == "" {
		return ""
	}
	return ", step " + step
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
