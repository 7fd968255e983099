package dlq

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/redact"
)

// poisonArgs is the payload of test.poison, whose handler fails for good
// with an error that quotes its URL and a tool's answer full of URLs that
// net/url rejects: the strings that once sent the redactor into endless
// recursion and killed the worker.
type poisonArgs struct {
	URL string `json:"url"`
}

func (poisonArgs) Kind() string { return "test.poison" }

// poisonURLs are the regression inputs of issue 7, defect 1, each with a
// secret the store must mask.
var poisonURLs = []string{
	"http://a/%zz?sig=SECRET-sig",
	"http://[::1/?token=SECRET-token",
	"http://x/\x01?sig=SECRET-ctl%zz",
	"http://u:SECRET-pass@h/?next=http%3A%2F%2Fa%3ASECRET-nested%40c%2F%zz",
}

func TestPoisonErrorsAreRecordedListedAndShown(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	err := queue.Register(b.reg, `{"type":"object","properties":{"url":{"type":"string"}},"required":["url"]}`,
		func(ctx context.Context, s *jobs.Step, a poisonArgs) error {
			return jobs.Permanent(errors.New("POST " + a.URL + ": 500: " + strings.Join(poisonURLs, " ")))
		})
	if err != nil {
		t.Fatal(err)
	}
	b.startWorker(t)
	ctx := context.Background()
	var ids []string
	for _, u := range poisonURLs {
		res, err := b.client.EnqueueArgs(ctx, poisonArgs{URL: u}, queue.EnqueueOptions{})
		if err != nil {
			t.Fatalf("enqueue %q: %v", u, err)
		}
		ids = append(ids, res.ID)
	}
	// The worker lives on and serves the next task.
	ok := b.enqueue(t, "ok", queue.EnqueueOptions{})
	waitFor(t, 10*time.Second, "the poison tasks to be archived and the next to succeed", func() bool {
		for _, id := range ids {
			if b.taskState(t, id) != 5 { // archived
				return false
			}
		}
		return b.taskState(t, ok) != 1 && b.taskState(t, ok) != 2 // neither active nor pending
	})

	recs, err := b.store.List(ctx, Filter{})
	if err != nil || len(recs) != len(poisonURLs) {
		t.Fatalf("List = %d records, %v; want %d", len(recs), err, len(poisonURLs))
	}
	show := redact.New(nil, nil) // as dlq show masks the payload
	for _, rec := range recs {
		r := b.get(t, rec.ID)
		if r.Kind != "test.poison" || r.Class != jobs.ClassPermanent || len(r.History) != 1 {
			t.Fatalf("record = %+v", r)
		}
		for _, s := range []string{r.Error, r.History[0].Error} {
			if strings.Contains(s, "SECRET") || !strings.Contains(s, redact.Mask) {
				t.Errorf("stored error not masked: %q", s)
			}
		}
		payload, ok := show.JSON(r.Payload)
		if !ok || strings.Contains(string(payload), "SECRET") {
			t.Errorf("payload %s shown as %s, %v", r.Payload, payload, ok)
		}
	}
}

func TestPoisonRecordWrittenDirectlyIsListedAndShown(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	msg := b.store.redact("tool answered 302 to " + strings.Join(poisonURLs, " "))
	id := b.deadDirect(t, Death{TaskID: "poison-1", Kind: "http.call",
		Payload: []byte(`{"url":"http://a/%zz","headers":{"Location":"http://[::1","Authorization":"Bearer SECRET-bearer"}}`),
		Headers: map[string]string{"Location": poisonURLs[0], "X-Amz-Security-Token": "SECRET-amz"},
		Final:   Attempt{Error: msg}})
	if strings.Contains(msg, "SECRET") {
		t.Fatalf("redact(%q) kept a secret", msg)
	}
	recs, err := b.store.List(context.Background(), Filter{Kind: "http.call"})
	if err != nil || len(recs) != 1 || recs[0].ID != id {
		t.Fatalf("List = %+v, %v", recs, err)
	}
	r := b.get(t, id)
	show := redact.New(nil, nil)
	payload, ok := show.JSON(r.Payload)
	if !ok || strings.Contains(string(payload), "SECRET") || !strings.Contains(string(payload), `"url":"http://a/%zz"`) {
		t.Errorf("payload shown as %s, %v", payload, ok)
	}
	for k, v := range r.Headers {
		if got := show.Header(k, v); strings.Contains(got, "SECRET") {
			t.Errorf("header %s shown as %q", k, got)
		}
	}
}
