package dashboard

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/agentq/agentq/redact"
)

// poisonPayloads hold the strings that once sent the redactor into endless
// recursion (issue 7, defect 1) and took asynqmon's task list down with
// it, each with a secret that must not show.
var poisonPayloads = []string{
	`{"url":"http://a/%zz?sig=SECRET-sig"}`,
	`{"url":"http://[::1/?token=SECRET-token","method":"GET"}`,
	`{"url":"http://x/\u0001?sig=SECRET-ctl%zz"}`,
	`{"url":"http://u:SECRET-pass@h/?next=http%3A%2F%2Fa%3ASECRET-nested%40c%2F%zz"}`,
	`{"body":"see http://a/%zz and http://[::1 with token=SECRET-body"}`,
	"POST http://a/%zz?sig=SECRET-text failed: 500 http://[::1",
	"http://u:SECRET-plain@a/%zz",
}

func TestRedactingFormatterPoison(t *testing.T) {
	t.Parallel()
	f := redactingFormatter{redact.New(nil, nil)}
	tests := []struct {
		name string
		in   string
	}{
		{name: "bad escape", in: poisonPayloads[0]},
		{name: "unclosed IPv6 host", in: poisonPayloads[1]},
		{name: "control byte", in: poisonPayloads[2]},
		{name: "nested encoded", in: poisonPayloads[3]},
		{name: "URLs in a string", in: poisonPayloads[4]},
		{name: "text", in: poisonPayloads[5]},
		{name: "text, one URL", in: poisonPayloads[6]},
		{name: "invalid UTF-8", in: "http://a/%zz\xff?sig=SECRET-utf8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := f.format("http.call", []byte(tt.in))
			if strings.Contains(got, "SECRET") {
				t.Errorf("format(%q) = %q, shows a secret", tt.in, got)
			}
			if json.Valid([]byte(tt.in)) && !json.Valid([]byte(got)) {
				t.Errorf("format(%q) = %q, not JSON", tt.in, got)
			}
		})
	}
}

func TestAPIShowsPoisonPayloads(t *testing.T) {
	t.Parallel()
	_, ts, b := setup(t, setupOpts{})
	c := asynq.NewClient(b.opt)
	defer c.Close()
	var ids []string
	for _, p := range poisonPayloads {
		info, err := c.Enqueue(asynq.NewTask("http.call", []byte(p)), asynq.Queue("dash_poison"))
		if err != nil {
			t.Fatalf("enqueue: %v", err)
		}
		ids = append(ids, info.ID)
	}
	paths := []string{"/api/queues/dash_poison/pending_tasks?page=1&page_size=20"}
	for _, id := range ids {
		paths = append(paths, "/api/queues/dash_poison/tasks/"+id)
	}
	for _, path := range paths {
		resp, body := do(t, http.MethodGet, ts.URL+path)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: status = %d, body %s", path, resp.StatusCode, body)
		}
		if strings.Contains(body, "SECRET") || !strings.Contains(body, "****") {
			t.Errorf("GET %s: secrets shown or nothing masked: %s", path, body)
		}
	}
}
