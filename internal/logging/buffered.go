package logging

import (
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Buffered defaults.
const (
	// FlushIntervalDefault is the longest a buffered line below warn waits.
	FlushIntervalDefault = 100 * time.Millisecond
	// bufferMax is how much waits before it is written at once.
	bufferMax = 64 << 10
)

// Buffered batches log lines for a file or a pipe: a worker logs one line
// per attempt, and a write system call per line cost a tenth of its
// throughput. Lines below warn wait at most the flush interval (or until
// 64 KiB wait); a warn or error line is written at once, after what waits
// before it, so failures and dead letters are never late. A crash loses at
// most the last interval's info lines. It is safe for concurrent use;
// Close writes what waits.
type Buffered struct {
	w        io.Writer
	interval time.Duration

	mu     sync.Mutex
	buf    []byte
	timer  *time.Timer // armed while buf holds lines
	closed bool
	err    error // the first write error, reported by Flush and Close
}

// NewBuffered returns a Buffered writing to w; interval 0 means
// FlushIntervalDefault.
func NewBuffered(w io.Writer, interval time.Duration) *Buffered {
	if interval <= 0 {
		interval = FlushIntervalDefault
	}
	return &Buffered{w: w, interval: interval}
}

// Write buffers p as a line below warn.
func (b *Buffered) Write(p []byte) (int, error) { return b.WriteLevel(zerolog.InfoLevel, p) }

// WriteLevel buffers p, or writes it at once with what waits when level is
// warn or above, the buffer is full, or the writer is closed.
func (b *Buffered) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if b.closed || (level >= zerolog.WarnLevel && level != zerolog.NoLevel) || len(b.buf) >= bufferMax {
		b.flushLocked()
		return len(p), nil
	}
	if b.timer == nil {
		b.timer = time.AfterFunc(b.interval, b.flushTimer)
	} else if len(b.buf) == len(p) {
		b.timer.Reset(b.interval)
	}
	return len(p), nil
}

func (b *Buffered) flushTimer() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

func (b *Buffered) flushLocked() {
	if len(b.buf) == 0 {
		return
	}
	if _, err := b.w.Write(b.buf); err != nil && b.err == nil {
		b.err = err
	}
	b.buf = b.buf[:0]
	if b.timer != nil {
		b.timer.Stop()
	}
}

// Flush writes what waits.
func (b *Buffered) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	return b.err
}

// Close writes what waits; later lines are written at once.
func (b *Buffered) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	b.closed = true
	return b.err
}
