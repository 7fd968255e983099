package survivetest

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// poisonTool answers every route with something a tool should not say.
func poisonTool(t *testing.T) *httptest.Server {
	t.Helper()
	big := bytes.Repeat([]byte("0123456789abcdef"), 10<<20/16) // 10 MiB
	var bomb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestCompression)
	zeros := make([]byte, 1<<20)
	for range 100 { // 100 MiB of zeros, about 100 KiB compressed
		_, _ = zw.Write(zeros)
	}
	_ = zw.Close()
	hijack := func(w http.ResponseWriter, raw string, reset bool) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		_, _ = conn.Write([]byte(raw))
		if tc, ok := conn.(*net.TCPConn); ok && reset {
			_ = tc.SetLinger(0) // close with RST
		}
		_ = conn.Close()
	}
	mux := http.NewServeMux()
	answer := func(status int, header map[string]string, body []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			for k, v := range header {
				w.Header().Set(k, v)
			}
			w.WriteHeader(status)
			_, _ = w.Write(body)
		}
	}
	badURLs := []byte("upstream failed: see http://a/%zz and http://[::1 and https://user:hunter2@[::1/%zz?token=t0ps3cret")
	mux.Handle("/500-bad-urls", answer(500, nil, badURLs))
	mux.Handle("/redirect-bad-url", answer(302, map[string]string{"Location": "http://a/%zz"}, nil))
	mux.Handle("/redirect-bad-host", answer(307, map[string]string{"Location": "http://[::1"}, nil))
	mux.Handle("/redirect-loop", answer(302, map[string]string{"Location": "/redirect-loop"}, nil))
	mux.Handle("/500-big", answer(500, nil, big))
	mux.Handle("/200-big", answer(200, nil, big))
	mux.Handle("/500-gzip-bomb", answer(500, map[string]string{"Content-Encoding": "gzip"}, bomb.Bytes()))
	mux.Handle("/200-gzip-bomb", answer(200, map[string]string{"Content-Encoding": "gzip"}, bomb.Bytes()))
	mux.Handle("/500-invalid-utf8", answer(500, nil, []byte("bad \xff\xfe\xfd bytes \xc3(")))
	mux.Handle("/500-nul", answer(500, nil, []byte("a\x00b\x00\x00c")))
	mux.Handle("/500-terminal-escapes", answer(500, nil, []byte("\x1b]0;pwned\x07\x1b[2J\x1b[31mred\x1b[0m\r\x08")))
	mux.Handle("/429-retry-after-garbage", answer(429, map[string]string{"Retry-After": "soon, maybe"}, nil))
	mux.Handle("/503-retry-after-overflow", answer(503, map[string]string{"Retry-After": "99999999999999999999"}, nil))
	mux.Handle("/429-retry-after-max-int", answer(429, map[string]string{"Retry-After": "9223372036854775807"}, nil))
	mux.Handle("/429-retry-after-year-9999", answer(429, map[string]string{"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}, nil))
	mux.Handle("/200-content-type-lie", answer(200, map[string]string{"Content-Type": "application/json"}, []byte("<html>not json")))
	mux.Handle("/500-content-type-lie", answer(500, map[string]string{"Content-Type": "image/png"}, []byte("plain text, not a png")))
	mux.HandleFunc("/cut-mid-body", func(w http.ResponseWriter, _ *http.Request) {
		hijack(w, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly ten.!", false)
	})
	mux.HandleFunc("/reset", func(w http.ResponseWriter, _ *http.Request) { hijack(w, "", true) })
	mux.HandleFunc("/garbage-status-line", func(w http.ResponseWriter, _ *http.Request) {
		hijack(w, "HTTP/1.1 abc \x00\xff garbage\r\n\r\n", false)
	})
	mux.HandleFunc("/status-999", func(w http.ResponseWriter, _ *http.Request) {
		hijack(w, "HTTP/1.1 999 Weird\r\nContent-Length: 0\r\n\r\n", false)
	})
	stop := make(chan struct{})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		// Once the body is read, the server sees the caller hang up.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		close(stop)
		srv.Close()
	})
	return srv
}

// A tool's answer, however malformed, ends its own step (as a success or
// a dead letter, after its retries) and nothing else: the worker process
// and its other tasks carry on, and the dead letters stay readable.
func TestWorkerSurvivesPoisonToolAnswers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tool := poisonTool(t)
	b.startWorker(4)

	cases := []struct {
		name, path string
		timeout    string // the task's attempt timeout
		payloadTO  string // the request timeout in the payload
		succeeds   bool
	}{
		{name: "500 quoting unparsable URLs", path: "/500-bad-urls"},
		{name: "redirect to an unparsable URL", path: "/redirect-bad-url"},
		{name: "redirect to an unparsable host", path: "/redirect-bad-host"},
		{name: "redirect loop", path: "/redirect-loop"},
		{name: "500 with a 10 MiB body", path: "/500-big"},
		{name: "200 with a 10 MiB body", path: "/200-big", succeeds: true},
		{name: "500 gzip bomb", path: "/500-gzip-bomb"},
		{name: "200 gzip bomb", path: "/200-gzip-bomb", succeeds: true},
		{name: "500 with invalid UTF-8", path: "/500-invalid-utf8"},
		{name: "500 with NUL bytes", path: "/500-nul"},
		{name: "500 with terminal escapes", path: "/500-terminal-escapes"},
		{name: "Retry-After garbage", path: "/429-retry-after-garbage"},
		{name: "Retry-After overflowing int64", path: "/503-retry-after-overflow"},
		{name: "Retry-After max int64 seconds", path: "/429-retry-after-max-int"},
		{name: "Retry-After in the year 9999", path: "/429-retry-after-year-9999"},
		{name: "200 whose Content-Type lies", path: "/200-content-type-lie", succeeds: true},
		{name: "500 whose Content-Type lies", path: "/500-content-type-lie"},
		{name: "connection closed mid-body", path: "/cut-mid-body"},
		{name: "connection reset", path: "/reset"},
		{name: "garbage status line", path: "/garbage-status-line"},
		{name: "status 999", path: "/status-999"},
		{name: "hang past the request timeout", path: "/hang", payloadTO: "1s"},
		{name: "hang past the attempt timeout", path: "/hang", timeout: "1s"},
	}
	const okBefore, okAfter = 46, 20
	runID := func(i int) string { return fmt.Sprintf("poison-%02d", i) }
	var tasks []task
	oks := okTasks("ok-before", okBefore)
	for i, tc := range cases {
		tasks = append(tasks, oks[i*okBefore/len(cases):(i+1)*okBefore/len(cases)]...)
		payload := map[string]any{"method": "POST", "url": tool.URL + tc.path, "body": map[string]int{"i": i}}
		if tc.payloadTO != "" {
			payload["timeout"] = tc.payloadTO
		}
		tasks = append(tasks, task{Kind: "http.call", Payload: payload, RunID: runID(i), MaxRetry: retries(1),
			Timeout: cmpOr(tc.timeout, "10s")})
	}
	b.enqueue(tasks)
	wantDead := 0
	for _, tc := range cases {
		if !tc.succeeds {
			wantDead++
		}
	}
	settled := func(i int) bool {
		_, dead := b.deadLetters()[runID(i)]
		return dead || b.succeeded(runID(i)) == 1
	}
	b.waitFor(90*time.Second, "every ok task and every poison answer to settle", func() bool {
		if b.succeeded("ok-before") != okBefore {
			return false
		}
		for i := range cases {
			if !settled(i) {
				return false
			}
		}
		return true
	})

	recs := b.dlqList()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, dead := recs[runID(i)]
			if tc.succeeds {
				if dead || b.succeeded(runID(i)) != 1 {
					t.Fatalf("want success; dead letter %+v, attempts %v", r, b.attempts(runID(i)))
				}
				return
			}
			if !dead || r.Status != "dead" {
				t.Fatalf("want a dead letter; got %+v (attempts %v)", r, b.attempts(runID(i)))
			}
			readable(t, "dead letter error", r.Error)
			for _, secret := range []string{"hunter2", "t0ps3cret"} {
				if strings.Contains(r.Error, secret) {
					t.Errorf("dead letter error shows %q: %q", secret, r.Error)
				}
			}
			out, errOut, code := b.run("", "dlq", "show", r.ID)
			if code != 0 || !strings.Contains(out, r.ID) {
				t.Fatalf("dlq show %s: exit %d err %s", r.ID, code, errOut)
			}
			readable(t, "dlq show output", strings.ReplaceAll(out, "\n", " "))
		})
	}
	b.afterPoison(okAfter)
	t.Logf("one worker process (pid %d) throughout: %d ok tasks succeeded; of %d poison answers %d succeeded and %d were dead-lettered",
		b.worker.PID(), okBefore+okAfter, len(cases), len(cases)-wantDead, wantDead)
}

// readable fails unless s is valid UTF-8, bounded and free of control
// characters other than tabs, so that printing it cannot garble a terminal.
func readable(t *testing.T, what, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Errorf("%s is not valid UTF-8: %q", what, s)
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\t' }); i >= 0 {
		t.Errorf("%s holds control character %q at %d: %q", what, s[i:i+1], i, s)
	}
	if len(s) > 16<<10 {
		t.Errorf("%s is %d bytes long", what, len(s))
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
