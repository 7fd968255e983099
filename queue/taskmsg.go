package queue

import (
	"errors"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// asynq stores a task as a protobuf TaskMessage (asynq v0.26,
// internal/proto/asynq.proto) in the "msg" field of its task hash. asynq's
// packages that build it are internal, so the client encodes it here with
// protowire; TestTaskMessageMatchesAsynq pins the result to what
// asynq.Client writes.

// TaskMessage field numbers (asynq.proto, "Next ID: 16").
const (
	tmType        protowire.Number = 1
	tmPayload     protowire.Number = 2
	tmID          protowire.Number = 3
	tmQueue       protowire.Number = 4
	tmRetry       protowire.Number = 5
	tmRetried     protowire.Number = 6
	tmErrorMsg    protowire.Number = 7
	tmTimeout     protowire.Number = 8
	tmDeadline    protowire.Number = 9
	tmUniqueKey   protowire.Number = 10
	tmLastFailed  protowire.Number = 11
	tmRetention   protowire.Number = 12
	tmCompletedAt protowire.Number = 13
	tmGroupKey    protowire.Number = 14
	tmHeaders     protowire.Number = 15
)

// asynqDefaultTimeout is the timeout asynq's client gives a task with
// neither timeout nor deadline (asynq v0.26, client.go defaultTimeout).
const asynqDefaultTimeout = 30 * 60 // seconds

// header is one task header; a task's headers are written in the order given.
type header struct{ k, v string }

// taskMessage holds the TaskMessage fields asynq's client sets on enqueue
// for the options agentq uses. The others (retried, error_msg,
// last_failed_at, unique_key, group_key, retention, completed_at) are zero
// on a new task without uniqueness, group or retention, and proto3 leaves
// zero fields out.
type taskMessage struct {
	kind    string
	payload []byte
	headers []header
	id      string
	queue   string
	retry   int32
	timeout int64 // seconds; asynqDefaultTimeout when not set
	// deadline is a Unix time in seconds, 0 for none.
	deadline int64
}

// errInvalidUTF8 is what protobuf refuses in a string field; asynq's
// decoder would refuse such a message.
var errInvalidUTF8 = errors.New("string field contains invalid UTF-8")

// appendTaskMessage appends m encoded as asynq's TaskMessage to b, fields
// in field number order as protobuf-go writes them.
func appendTaskMessage(b []byte, m *taskMessage) ([]byte, error) {
	if !utf8.ValidString(m.kind) || !utf8.ValidString(m.id) || !utf8.ValidString(m.queue) {
		return nil, errInvalidUTF8
	}
	for _, h := range m.headers {
		if !utf8.ValidString(h.k) || !utf8.ValidString(h.v) {
			return nil, errInvalidUTF8
		}
	}
	b = appendString(b, tmType, m.kind)
	if len(m.payload) > 0 {
		b = protowire.AppendTag(b, tmPayload, protowire.BytesType)
		b = protowire.AppendBytes(b, m.payload)
	}
	b = appendString(b, tmID, m.id)
	b = appendString(b, tmQueue, m.queue)
	b = appendVarint(b, tmRetry, uint64(int64(m.retry))) // int32: negative values sign-extend
	b = appendVarint(b, tmTimeout, uint64(m.timeout))
	b = appendVarint(b, tmDeadline, uint64(m.deadline))
	// A map entry is a message {key = 1; value = 2}; protobuf-go writes
	// both, empty or not.
	for _, h := range m.headers {
		b = protowire.AppendTag(b, tmHeaders, protowire.BytesType)
		n := 1 + protowire.SizeBytes(len(h.k)) + 1 + protowire.SizeBytes(len(h.v))
		b = protowire.AppendVarint(b, uint64(n))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, h.k)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, h.v)
	}
	return b, nil
}

// taskMessageSize is an upper bound of m's encoded size, to size the buffer
// once.
func taskMessageSize(m *taskMessage) int {
	n := 3*10 + 4*11 // the varint fields and every tag, generously
	n += protowire.SizeBytes(len(m.kind)) + protowire.SizeBytes(len(m.payload)) +
		protowire.SizeBytes(len(m.id)) + protowire.SizeBytes(len(m.queue))
	for _, h := range m.headers {
		n += 4 + 10 + protowire.SizeBytes(len(h.k)) + protowire.SizeBytes(len(h.v))
	}
	return n
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}
