package dlq

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentq/agentq/jobs"
)

// Status is where a dead letter stands.
type Status string

// Statuses of a record. A record moves dead -> replayed -> resolved, or
// back to dead with the replay's attempts appended.
const (
	// StatusDead is a task that ended without success and waits for a human.
	StatusDead Status = "dead"
	// StatusReplayed has a replay task enqueued whose outcome is not known yet.
	StatusReplayed Status = "replayed"
	// StatusResolved is settled: its replay succeeded, or its archived task
	// was run again from asynqmon and succeeded.
	StatusResolved Status = "resolved"
	// StatusRerun is an archived task that was run again from asynqmon and
	// has no outcome yet.
	StatusRerun Status = "rerun"
	// StatusDeleted is a record whose task left asynq without an outcome:
	// the archived task was deleted from asynqmon (or run from there and
	// finished before the reconciler saw it run), or a replay task vanished.
	// The record keeps the payload and can be replayed.
	StatusDeleted Status = "deleted"
)

// Statuses lists every status.
var Statuses = []Status{StatusDead, StatusReplayed, StatusResolved, StatusRerun, StatusDeleted}

// ParseStatus checks a status name, ignoring case and surrounding space. An
// error quotes at most the first 64 bytes of s.
func ParseStatus(s string) (Status, error) {
	st := Status(strings.ToLower(strings.TrimSpace(s)))
	if slices.Contains(Statuses, st) {
		return st, nil
	}
	return "", fmt.Errorf("unknown status %s (one of dead, replayed, resolved, rerun, deleted)", shortQuote(s))
}

// shortQuote quotes s for an error message, cut to 64 bytes, so that a huge
// argument does not make a huge error.
func shortQuote(s string) string {
	const maxShown = 64
	if len(s) <= maxShown {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:maxShown]) + "..."
}

// Replayable reports whether a record in status s can be replayed.
func (s Status) Replayable() bool { return s == StatusDead || s == StatusDeleted }

// ClassManual is the class a dead letter may have besides jobs' (see
// jobs.DeadLetterClasses): a task archived by hand (asynqmon, Inspector) or
// by anything else that is not agentq's worker.
const ClassManual jobs.Class = "manual"

// ClassLeaseExpired is jobs.ClassLeaseExpired.
//
// Deprecated: use jobs.ClassLeaseExpired.
const ClassLeaseExpired = jobs.ClassLeaseExpired

// Classes lists every class a record may have: jobs.DeadLetterClasses
// (a death the worker saw, or a lease_expired task asynq archived), then
// ClassManual.
var Classes = append(jobs.DeadLetterClasses(), ClassManual)

// ParseClass checks a class name, ignoring case and surrounding space. An
// error quotes at most the first 64 bytes of s.
func ParseClass(s string) (jobs.Class, error) {
	c := jobs.Class(strings.ToLower(strings.TrimSpace(s)))
	if slices.Contains(Classes, c) {
		return c, nil
	}
	names := make([]string, len(Classes))
	for i, c := range Classes {
		names[i] = string(c)
	}
	return "", fmt.Errorf("unknown class %s (one of %s)", shortQuote(s), strings.Join(names, ", "))
}

// Sources of a record.
const (
	// SourceWorker is a death seen by the capture middleware.
	SourceWorker = "worker"
	// SourceReconciler is a death found in asynq's archive.
	SourceReconciler = "reconciler"
)

// Attempt is one failed attempt.
type Attempt struct {
	// At is when the attempt failed.
	At time.Time `json:"at"`
	// Attempt is the 1-based attempt number of its task.
	Attempt int `json:"attempt"`
	// TaskID is the task that made the attempt: the original or a replay.
	TaskID string `json:"task_id"`
	// Class is the failure's class.
	Class jobs.Class `json:"class"`
	// Error is the failure's message, secrets redacted.
	Error string `json:"error"`
}

// storedAttempt is Attempt as stored; At comes first so that scripts can
// read it with a pattern.
type storedAttempt struct {
	At      int64  `json:"at"`
	Attempt int    `json:"n"`
	TaskID  string `json:"task"`
	Class   string `json:"class"`
	Error   string `json:"error"`
}

func (a Attempt) encode() string {
	b, _ := json.Marshal(storedAttempt{At: a.At.UnixMilli(), Attempt: a.Attempt, TaskID: a.TaskID, Class: string(a.Class), Error: a.Error})
	return string(b)
}

func decodeAttempt(s string) Attempt {
	var sa storedAttempt
	if err := json.Unmarshal([]byte(s), &sa); err != nil {
		return Attempt{Error: "unreadable attempt: " + s}
	}
	return Attempt{At: time.UnixMilli(sa.At).UTC(), Attempt: sa.Attempt, TaskID: sa.TaskID, Class: jobs.Class(sa.Class), Error: sa.Error}
}

// Record is one dead letter.
type Record struct {
	// ID names the record in `agentq dlq` commands.
	ID string `json:"id"`
	// TaskID is the asynq id of the task that died first.
	TaskID string `json:"task_id"`
	// Queue, Kind, Workflow, RunID and Key are the task's.
	Queue    string `json:"queue"`
	Kind     string `json:"kind"`
	Workflow string `json:"workflow"`
	RunID    string `json:"run_id"`
	// Step is the run step the task was (jobs.Step.Name); empty when the
	// task is in no run. A replay is the same step of the same run.
	Step string `json:"step"`
	Key  string `json:"key"`
	// Payload is the payload of the last task that died; a replay sends it.
	Payload json.RawMessage `json:"payload"`
	// Headers are that task's headers.
	Headers map[string]string `json:"headers,omitempty"`
	// MaxAttempts is the task's attempt budget; a replay gets it afresh.
	MaxAttempts int `json:"max_attempts"`
	// Status is where the record stands.
	Status Status `json:"status"`
	// Class and Error are the last failure's.
	Class jobs.Class `json:"class"`
	Error string     `json:"error"`
	// Attempts counts the failed attempts in History.
	Attempts int `json:"attempts"`
	// FirstFailedAt and FailedAt are the first and the last failure.
	FirstFailedAt time.Time `json:"first_failed_at"`
	FailedAt      time.Time `json:"failed_at"`
	// ArchivedTask is the asynq task id of the last death (the original or
	// a replay), as asynq's archive shows it.
	ArchivedTask string `json:"archived_task"`
	// Replays counts replays; ReplayTask is the last one's task id.
	Replays    int    `json:"replays"`
	ReplayTask string `json:"replay_task,omitempty"`
	// ReplayOf is the record this one's first task replayed, when that
	// record no longer existed (lineage).
	ReplayOf   string     `json:"replay_of,omitempty"`
	ReplayedAt *time.Time `json:"replayed_at,omitempty"`
	ResolvedAt *time.Time `json:"resolved_at,omitempty"`
	// Source says who recorded the first death: worker or reconciler.
	Source string `json:"source"`
	// Note explains the last status change made by the reconciler.
	Note string `json:"note,omitempty"`
	// History holds every failed attempt, oldest first; only Get fills it.
	History []Attempt `json:"history,omitempty"`
}

// recordFields are the hash fields read into a Record.
var recordFields = []string{
	"id", "task_id", "queue", "kind", "workflow", "run_id", "key", "payload", "headers", "max_attempts",
	"status", "class", "error", "attempts", "first_failed_at", "failed_at", "archived_task", "replays",
	"replay_task", "replay_of", "replayed_at", "resolved_at", "source", "note", "step",
}

func msTime(s string) time.Time {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func msTimePtr(s string) *time.Time {
	t := msTime(s)
	if t.IsZero() {
		return nil
	}
	return &t
}

// recordFromValues builds a Record from HMGET values in recordFields order.
func recordFromValues(vals []any) (Record, bool) {
	get := func(i int) string {
		if i >= len(vals) || vals[i] == nil {
			return ""
		}
		s, _ := vals[i].(string)
		return s
	}
	if get(0) == "" {
		return Record{}, false
	}
	r := Record{
		ID: get(0), TaskID: get(1), Queue: get(2), Kind: get(3), Workflow: get(4), RunID: get(5), Key: get(6),
		Status: Status(get(10)), Class: jobs.Class(get(11)), Error: get(12),
		FirstFailedAt: msTime(get(14)), FailedAt: msTime(get(15)), ArchivedTask: get(16),
		ReplayTask: get(18), ReplayOf: get(19), ReplayedAt: msTimePtr(get(20)), ResolvedAt: msTimePtr(get(21)),
		Source: get(22), Note: get(23), Step: get(24),
	}
	if p := get(7); json.Valid([]byte(p)) {
		r.Payload = json.RawMessage(p)
	} else {
		// A task enqueued outside agentq may carry any bytes.
		b, _ := json.Marshal(p)
		r.Payload = b
	}
	if h := get(8); h != "" {
		_ = json.Unmarshal([]byte(h), &r.Headers)
	}
	if r.Step == "" && r.RunID != "" {
		// A record written before records had a step field: its task's
		// headers name the step.
		r.Step = r.Headers[jobs.HeaderStep]
	}
	r.MaxAttempts, _ = strconv.Atoi(get(9))
	r.Attempts, _ = strconv.Atoi(get(13))
	r.Replays, _ = strconv.Atoi(get(17))
	return r, true
}

// ErrNotFound is returned for an id no record has.
var ErrNotFound = errors.New("no dead letter with this id")

// NotFoundError names the id that was not found; it matches ErrNotFound.
type NotFoundError struct{ ID string }

func (e *NotFoundError) Error() string { return fmt.Sprintf("no dead letter with id %q", e.ID) }

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// NotReplayableError is a replay of a record that is not dead or deleted.
type NotReplayableError struct {
	ID         string
	Status     Status
	ReplayTask string
}

func (e *NotReplayableError) Error() string {
	switch e.Status {
	case StatusReplayed:
		return fmt.Sprintf("dead letter %s is already replayed as task %s", e.ID, e.ReplayTask)
	case StatusResolved:
		return fmt.Sprintf("dead letter %s is resolved: nothing to replay", e.ID)
	case StatusRerun:
		return fmt.Sprintf("dead letter %s is being run again from asynqmon", e.ID)
	}
	return fmt.Sprintf("dead letter %s is %s and cannot be replayed", e.ID, e.Status)
}

// Filter selects records. Zero fields select everything.
type Filter struct {
	// Queue, Workflow, RunID and Kind match exactly.
	Queue, Workflow, RunID, Kind string
	// Error matches a substring of the last error, case-insensitively.
	Error string
	// Class matches the last failure's class.
	Class jobs.Class
	// Since keeps records whose last failure is at or after it.
	Since time.Time
	// Statuses keeps records in one of them.
	Statuses []Status
	// Limit stops after this many records; 0 means no limit.
	Limit int
}

// Match reports whether r passes every field of f but Limit and Since,
// which the index scan applies.
func (f Filter) Match(r Record) bool {
	switch {
	case f.Queue != "" && r.Queue != f.Queue,
		f.Workflow != "" && r.Workflow != f.Workflow,
		f.RunID != "" && r.RunID != f.RunID,
		f.Kind != "" && r.Kind != f.Kind,
		f.Class != "" && r.Class != f.Class,
		len(f.Statuses) > 0 && !slices.Contains(f.Statuses, r.Status),
		f.Error != "" && !strings.Contains(strings.ToLower(r.Error), strings.ToLower(f.Error)):
		return false
	}
	return true
}

// Empty reports whether f selects every record.
func (f Filter) Empty() bool {
	return f.Queue == "" && f.Workflow == "" && f.RunID == "" && f.Kind == "" && f.Error == "" && f.Class == "" &&
		f.Since.IsZero() && len(f.Statuses) == 0
}
