package dev

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestEmbeddedExpiryFollowsRealTime(t *testing.T) {
	t.Parallel()
	e, err := StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	rdb := redis.NewClient(&redis.Options{Addr: e.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "v", 150*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, "k").Val(); n != 1 {
		t.Fatal("key missing right after SET")
	}
	// Nothing but the wall clock moves miniredis's time here.
	ctx2, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := wait(ctx2, func() bool { return rdb.Exists(ctx, "k").Val() == 0 }); err != nil {
		t.Fatal("key with a 150ms TTL did not expire within 3s of real time")
	}
}

func TestToolServerRoutes(t *testing.T) {
	t.Parallel()
	ts := NewToolServer()
	defer ts.Close()
	get := func(path string, hdr map[string]string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, ts.URL()+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	codes := []int{}
	for i := 0; i < 3; i++ {
		codes = append(codes, get("/flaky?id=a&fail=2", nil).StatusCode)
	}
	if codes[0] != 503 || codes[1] != 503 || codes[2] != 200 || ts.Calls("/flaky", "a") != 3 {
		t.Fatalf("flaky codes = %v", codes)
	}
	r := get("/limited?id=b", nil)
	if r.StatusCode != 429 || r.Header.Get("Retry-After") != "1" || get("/limited?id=b", nil).StatusCode != 200 {
		t.Fatal("limited route")
	}
	if get("/broken", nil).StatusCode != 400 {
		t.Fatal("broken route")
	}
	get("/effect", map[string]string{"Idempotency-Key": "x"})
	get("/effect", map[string]string{"Idempotency-Key": "x"})
	if ts.Effects("x") != 2 {
		t.Fatalf("effects = %d", ts.Effects("x"))
	}
	resp, err := http.Post(ts.URL()+"/publish?id=r1", "text/plain", strings.NewReader("the draft"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || ts.Published("r1") != "the draft" || ts.Published("r2") != "" {
		t.Fatalf("publish: %d %q", resp.StatusCode, ts.Published("r1"))
	}
}
