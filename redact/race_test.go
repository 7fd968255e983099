//go:build race

package redact

// raceEnabled is set when the race detector runs, which slows regexps
// about tenfold.
const raceEnabled = true
