// Package logging builds agentq's zerolog loggers: pretty console output on a
// terminal, JSON lines otherwise, with snake_case fields.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// New returns a logger writing to w at level (debug, info, warn, error).
// format is "json", "console" or "auto" (console when w is a terminal).
func New(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return zerolog.Nop(), err
	}
	switch strings.ToLower(format) {
	case "", "auto":
		if IsTerminal(w) {
			w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
		}
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: !IsTerminal(w)}
	case "json":
	default:
		return zerolog.Nop(), fmt.Errorf("log.format: %q is not one of auto, json, console", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// NewFlushed is New for a process's own log (a worker's, a dashboard's):
// JSON lines to a file or a pipe go through a Buffered writer, so that a
// line per attempt does not cost a system call each. Call flush before the
// process exits; it is a no-op when nothing is buffered (a terminal, the
// console format).
func NewFlushed(w io.Writer, level, format string) (log zerolog.Logger, flush func() error, err error) {
	nop := func() error { return nil }
	f := strings.ToLower(format)
	if IsTerminal(w) || (f != "" && f != "auto" && f != "json") {
		log, err = New(w, level, format)
		return log, nop, err
	}
	b := NewBuffered(w, FlushIntervalDefault)
	if log, err = New(b, level, format); err != nil {
		return log, nop, err
	}
	return log, b.Close, nil
}

// ParseLevel maps a level name to zerolog's level.
func ParseLevel(level string) (zerolog.Level, error) {
	switch strings.ToLower(level) {
	case "debug":
		return zerolog.DebugLevel, nil
	case "", "info":
		return zerolog.InfoLevel, nil
	case "warn", "warning":
		return zerolog.WarnLevel, nil
	case "error":
		return zerolog.ErrorLevel, nil
	}
	return zerolog.InfoLevel, fmt.Errorf("log.level: %q is not one of debug, info, warn, error", level)
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}
