package dev

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
)

// ToolServer is a flaky HTTP tool on loopback, the kind an agent calls: it
// fails on purpose in the ways real tools do and counts every call and every
// side effect per Idempotency-Key.
//
// Routes:
//
//	/ok                 200
//	/flaky?id=X&fail=N  503 for the first N calls with id X, then 200
//	/limited?id=X       429 with Retry-After: 1 on the first call, then 200
//	/broken             400: a permanent failure
//	/effect             200; counts one side effect per Idempotency-Key
//	/publish?id=X       200; keeps the body (up to 64 KiB) as what X published
type ToolServer struct {
	srv       *httptest.Server
	mu        sync.Mutex
	calls     map[string]int    // "path?id" -> calls
	effects   map[string]int    // Idempotency-Key -> side effects applied
	published map[string]string // id -> body last published
}

// maxPublishBytes bounds the body /publish keeps.
const maxPublishBytes = 64 << 10

// NewToolServer starts the tool on a free loopback port.
func NewToolServer() *ToolServer {
	ts := &ToolServer{calls: map[string]int{}, effects: map[string]int{}, published: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		ts.count(r)
		fmt.Fprintln(w, `{"ok":true}`)
	})
	mux.HandleFunc("/flaky", func(w http.ResponseWriter, r *http.Request) {
		n := ts.count(r)
		fail, _ := strconv.Atoi(r.URL.Query().Get("fail"))
		if n <= fail {
			http.Error(w, `{"error":"upstream overloaded"}`, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, `{"ok":true}`)
	})
	mux.HandleFunc("/limited", func(w http.ResponseWriter, r *http.Request) {
		if ts.count(r) == 1 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"error":"rate limited"}`, http.StatusTooManyRequests)
			return
		}
		fmt.Fprintln(w, `{"ok":true}`)
	})
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) {
		ts.count(r)
		http.Error(w, `{"error":"invalid article id"}`, http.StatusBadRequest)
	})
	mux.HandleFunc("/effect", func(w http.ResponseWriter, r *http.Request) {
		ts.count(r)
		ts.mu.Lock()
		ts.effects[r.Header.Get("Idempotency-Key")]++
		ts.mu.Unlock()
		fmt.Fprintln(w, `{"ok":true}`)
	})
	mux.HandleFunc("/publish", func(w http.ResponseWriter, r *http.Request) {
		ts.count(r)
		body, err := io.ReadAll(io.LimitReader(r.Body, maxPublishBytes))
		if err != nil {
			http.Error(w, `{"error":"cannot read the body"}`, http.StatusBadRequest)
			return
		}
		ts.mu.Lock()
		ts.published[r.URL.Query().Get("id")] = string(body)
		ts.mu.Unlock()
		fmt.Fprintf(w, "{\"ok\":true,\"published_bytes\":%d}\n", len(body))
	})
	ts.srv = httptest.NewServer(mux)
	return ts
}

func (ts *ToolServer) count(r *http.Request) int {
	k := r.URL.Path + "?" + r.URL.Query().Get("id")
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.calls[k]++
	return ts.calls[k]
}

// URL is the tool's base URL.
func (ts *ToolServer) URL() string { return ts.srv.URL }

// Calls returns how often path was called with id.
func (ts *ToolServer) Calls(path, id string) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.calls[path+"?"+id]
}

// Effects returns how many side effects were applied for an
// Idempotency-Key.
func (ts *ToolServer) Effects(key string) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.effects[key]
}

// Published returns the body last published with id; "" when none.
func (ts *ToolServer) Published(id string) string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.published[id]
}

// Close stops the tool.
func (ts *ToolServer) Close() { ts.srv.Close() }
