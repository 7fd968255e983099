package logging

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// syncBuf is a bytes.Buffer safe for the flush timer's goroutine.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
	n  int // writes
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestBuffered(t *testing.T) {
	t.Parallel()
	t.Run("info waits, warn goes at once after it", func(t *testing.T) {
		t.Parallel()
		out := &syncBuf{}
		b := NewBuffered(out, time.Hour)
		_, _ = b.WriteLevel(zerolog.InfoLevel, []byte("a\n"))
		_, _ = b.WriteLevel(zerolog.InfoLevel, []byte("b\n"))
		if got := out.String(); got != "" {
			t.Fatalf("info lines written before the interval: %q", got)
		}
		_, _ = b.WriteLevel(zerolog.WarnLevel, []byte("w\n"))
		if got := out.String(); got != "a\nb\nw\n" || out.n != 1 {
			t.Fatalf("after a warn line: %q in %d writes, want the three lines in order in one write", got, out.n)
		}
	})
	t.Run("the interval flushes", func(t *testing.T) {
		t.Parallel()
		out := &syncBuf{}
		b := NewBuffered(out, 5*time.Millisecond)
		_, _ = b.Write([]byte("x\n"))
		for deadline := time.Now().Add(5 * time.Second); out.String() == ""; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("a buffered line was not written within 5s of a 5ms interval")
			}
		}
		_, _ = b.Write([]byte("y\n")) // re-arms the timer after a flush
		for deadline := time.Now().Add(5 * time.Second); out.String() != "x\ny\n"; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("second line not written: %q", out.String())
			}
		}
	})
	t.Run("a full buffer is written", func(t *testing.T) {
		t.Parallel()
		out := &syncBuf{}
		b := NewBuffered(out, time.Hour)
		line := []byte(strings.Repeat("z", 1023) + "\n")
		for range bufferMax / len(line) {
			_, _ = b.Write(line)
		}
		if got := len(out.String()); got != bufferMax {
			t.Fatalf("%d bytes written after %d buffered, want all of them", got, bufferMax)
		}
	})
	t.Run("close writes what waits, later lines go at once", func(t *testing.T) {
		t.Parallel()
		out := &syncBuf{}
		b := NewBuffered(out, time.Hour)
		_, _ = b.Write([]byte("1\n"))
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		_, _ = b.Write([]byte("2\n"))
		if got := out.String(); got != "1\n2\n" {
			t.Fatalf("got %q", got)
		}
	})
}

func TestNewFlushedBuffersJSONToAFile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, format string
		buffered     bool
	}{
		{"auto on a pipe or file", "auto", true},
		{"json", "json", true},
		{"console", "console", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := &syncBuf{}
			log, flush, err := NewFlushed(out, "info", tc.format)
			if err != nil {
				t.Fatal(err)
			}
			log.Info().Msg("attempt")
			if got := out.String() == ""; got != tc.buffered {
				t.Fatalf("line waiting = %v, want %v", got, tc.buffered)
			}
			if err := flush(); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "attempt") {
				t.Fatalf("after flush: %q", out.String())
			}
		})
	}
}
