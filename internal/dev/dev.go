// Package dev owns what `agentq dev` needs beyond the normal worker and
// dashboard: an embedded Redis-compatible server whose keys expire in real
// time, a flaky tool server on loopback, and the demo that drives both.
package dev

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// Embedded is an in-process Redis-compatible server (miniredis). Its data
// lives in memory and is gone when the process ends.
type Embedded struct {
	m    *miniredis.Miniredis
	stop chan struct{}
	wg   sync.WaitGroup
}

// StartEmbedded starts the embedded server on a free loopback port. A
// ticker advances miniredis's clock with real time, so key expiry (dedupe
// windows, leases) follows the wall clock as in real Redis.
func StartEmbedded() (*Embedded, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("start embedded redis: %w", err)
	}
	e := &Embedded{m: m, stop: make(chan struct{})}
	last := time.Now()
	m.SetTime(last)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-e.stop:
				return
			case now := <-t.C:
				m.SetTime(now)
				m.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	return e, nil
}

// Addr is the server's host:port.
func (e *Embedded) Addr() string { return e.m.Addr() }

// URL is a redis:// URL for the server.
func (e *Embedded) URL() string { return "redis://" + e.m.Addr() + "/0" }

// Close stops the server and its clock.
func (e *Embedded) Close() {
	close(e.stop)
	e.wg.Wait()
	e.m.Close()
}

// freeLoopback reports whether addr can be bound now.
func freeLoopback(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// DashboardAddr returns want if it is free, else a free loopback port, so
// that `agentq dev` still starts when 8080 is taken.
func DashboardAddr(want string) string {
	if freeLoopback(want) {
		return want
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return want
	}
	defer l.Close()
	return l.Addr().String()
}

// wait polls cond every 50ms until it holds or ctx ends.
func wait(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
