//go:build unix

package faults_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// request is one request the tool received.
type request struct {
	path, key string
	at        time.Time
	status    int       // what the tool decided to answer; 0 for no answer
	done      time.Time // when the handler returned (zero while in flight)
}

// tool is a loopback tool server that records every request with its
// Idempotency-Key. The path says how it answers; n (default: always) is how
// many requests per key get the bad answer before the tool answers 200:
//
//	/ok                    200
//	/hold?ms=M             200, decided on arrival (the side effect is
//	                       applied), sent M ms later or never if the caller
//	                       goes away first
//	/429?n=N&after=S       429 with Retry-After: S
//	/503?n=N               503
//	/hang?n=N              no answer until the caller goes away
//	/garbage?n=N&as=A      A is body200 (200 with a binary, invalid UTF-8
//	                       body), body500 (500 with such a body), poison500
//	                       (500 with URLs that do not parse), close (the
//	                       connection is closed without an answer) or
//	                       badproto (a response line that is not HTTP)
//
// A side effect is a request the tool decided to answer with 2xx: the
// effect is applied whether or not the caller hears the answer.
type tool struct {
	*httptest.Server
	quit chan struct{}

	mu   sync.Mutex
	reqs []*request
	seen map[string]int // path+key -> requests so far
}

// garbageBody is a response body no tool should send: NUL, invalid UTF-8,
// control characters, an unterminated JSON value.
var garbageBody = []byte("\x00\xff\xfe{\"error\":\"\x1b[31mboom\x07 \xc3\x28 \\u0000 \"\x00")

// poisonBody holds URLs that do not parse, which crashed the redactor
// (issue 7).
var poisonBody = []byte(`{"error":"see http://a/%zz or http://[::1 for details"}`)

func newTool(t *testing.T) *tool {
	tl := &tool{quit: make(chan struct{}), seen: map[string]int{}}
	tl.Server = httptest.NewServer(http.HandlerFunc(tl.serve))
	t.Cleanup(func() {
		close(tl.quit)
		tl.Server.CloseClientConnections()
		tl.Server.Close()
	})
	return tl
}

func (tl *tool) serve(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	q := r.URL.Query()
	key := r.Header.Get("Idempotency-Key")
	rec := &request{path: r.URL.Path, key: key, at: time.Now()}
	tl.mu.Lock()
	tl.reqs = append(tl.reqs, rec)
	tl.seen[r.URL.Path+"\x00"+key]++
	nth := tl.seen[r.URL.Path+"\x00"+key]
	tl.mu.Unlock()
	defer func() {
		tl.mu.Lock()
		rec.done = time.Now()
		tl.mu.Unlock()
	}()
	decide := func(status int) {
		tl.mu.Lock()
		rec.status = status
		tl.mu.Unlock()
	}
	bad := true
	if n, err := strconv.Atoi(q.Get("n")); err == nil && nth > n {
		bad = false
	}
	ok := func() {
		decide(http.StatusOK)
		fmt.Fprintln(w, `{"ok":true}`)
	}
	switch r.URL.Path {
	case "/ok":
		ok()
	case "/hold":
		decide(http.StatusOK)
		ms, _ := strconv.Atoi(q.Get("ms"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			fmt.Fprintln(w, `{"ok":true}`)
		case <-r.Context().Done():
		case <-tl.quit:
		}
	case "/429":
		if !bad {
			ok()
			return
		}
		decide(http.StatusTooManyRequests)
		w.Header().Set("Retry-After", q.Get("after"))
		http.Error(w, "slow down", http.StatusTooManyRequests)
	case "/503":
		if !bad {
			ok()
			return
		}
		decide(http.StatusServiceUnavailable)
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	case "/hang":
		if !bad {
			ok()
			return
		}
		select {
		case <-r.Context().Done():
		case <-tl.quit:
		}
	case "/garbage":
		if !bad {
			ok()
			return
		}
		switch q.Get("as") {
		case "body200":
			decide(http.StatusOK)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(garbageBody)
		case "body500":
			decide(http.StatusInternalServerError)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write(garbageBody)
		case "poison500":
			decide(http.StatusInternalServerError)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write(poisonBody)
		case "close", "badproto":
			conn, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			if q.Get("as") == "badproto" {
				_, _ = buf.WriteString("HTTP/1.1 2OO OK\r\nContent-Length: -7\r\n\r\n\x00\xff")
				_ = buf.Flush()
			}
			_ = conn.Close()
		default:
			http.Error(w, "unknown garbage", http.StatusBadRequest)
		}
	default:
		http.NotFound(w, r)
	}
}

// url returns the tool's URL for a path with its query.
func (tl *tool) url(pathQuery string) string { return tl.URL + pathQuery }

// requests returns a copy of every request so far.
func (tl *tool) requests() []request {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	out := make([]request, len(tl.reqs))
	for i, r := range tl.reqs {
		out[i] = *r
	}
	return out
}

// effects returns the side effects (2xx decisions) per Idempotency-Key.
func (tl *tool) effects() map[string]int {
	m := map[string]int{}
	for _, r := range tl.requests() {
		if r.status/100 == 2 {
			m[r.key]++
		}
	}
	return m
}

// inFlight returns the keys of requests received and not yet returned.
func (tl *tool) inFlight() map[string]bool {
	m := map[string]bool{}
	for _, r := range tl.requests() {
		if r.done.IsZero() {
			m[r.key] = true
		}
	}
	return m
}

// answeredSince returns the keys whose 2xx answers were sent at or after
// since (their acknowledgement may not have reached Redis).
func (tl *tool) answeredSince(since time.Time) map[string]bool {
	m := map[string]bool{}
	for _, r := range tl.requests() {
		if r.status/100 == 2 && !r.done.IsZero() && !r.done.Before(since) {
			m[r.key] = true
		}
	}
	return m
}
