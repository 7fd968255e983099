package cli

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentq/agentq/dlq"
)

// maxErrLen bounds a selector error whatever the argument's size: the
// message quotes at most maxShownValue bytes of it, escaped (4 bytes a byte
// at worst), plus the list of valid names.
const maxErrLen = 4*maxShownValue + 300

// FuzzDLQSelectors parses any --class, --status, --since and --limit values
// and any id as dlq replay/purge do: nothing panics; a refusal names the flag
// (or the id) and is short; an accepted filter holds only known classes and
// statuses, a since no later than now and a limit not below zero; accepted
// ids round-trip, and ParseStatus/ParseClass accept their own output.
func FuzzDLQSelectors(f *testing.F) {
	f.Add("rate_limited", "dead,replayed", "24h", "10", "42")
	f.Add(" PANIC ", "Deleted", "0", "0", "1")
	f.Add("", "dead,", "-1h", "-1", "0")
	f.Add("oops", "gone", "2562047h47m16.854775807s", "99999999999999999999", "042")
	f.Add("\x00", "\xff,dead", "1e3", "1.5", "+1")
	f.Add("lease_expired", ",", "9223372036854775807ns", "x", "no-such-id")
	f.Add(strings.Repeat("é", 100), strings.Repeat(",", 100), "1ns", "2147483648", "9223372036854775808")
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, class, status, since, limit, id string) {
		// The parsers of dlq.
		if c, err := dlq.ParseClass(class); err == nil {
			if !slices.Contains(dlq.Classes, c) {
				t.Fatalf("ParseClass(%q) = %q, not a class", class, c)
			}
			if back, err := dlq.ParseClass(string(c)); err != nil || back != c {
				t.Fatalf("ParseClass(%q) = %q, %v: no round trip", c, back, err)
			}
		} else if !strings.HasPrefix(err.Error(), "unknown class ") || len(err.Error()) > maxErrLen {
			t.Fatalf("ParseClass(%q): error %q", class, err)
		}
		if st, err := dlq.ParseStatus(status); err == nil {
			if back, err := dlq.ParseStatus(string(st)); err != nil || back != st || !slices.Contains(dlq.Statuses, st) {
				t.Fatalf("ParseStatus(%q) = %q, %v: no round trip", st, back, err)
			}
		} else if !strings.HasPrefix(err.Error(), "unknown status ") || len(err.Error()) > maxErrLen {
			t.Fatalf("ParseStatus(%q): error %q", status, err)
		}

		// The id check: accepted ids are canonical decimal numbers.
		if err := checkID(id); err == nil {
			n, perr := strconv.ParseUint(id, 10, 64)
			if perr != nil || n == 0 || strconv.FormatUint(n, 10) != id || checkID(strconv.FormatUint(n, 10)) != nil {
				t.Fatalf("checkID accepted %q", id)
			}
		} else if !strings.HasPrefix(err.Error(), "no dead letter with id ") || len(err.Error()) > maxErrLen {
			t.Fatalf("checkID(%q): error %q", id, err)
		}

		// The flags as the command line gives them.
		cmd, sel, err := selectorCommandFuzz(class, status, since, limit)
		if err != nil {
			return // pflag refused --since or --limit, naming the flag
		}
		flt, err := sel.filter(now)
		if err != nil {
			msg := err.Error()
			if !slices.ContainsFunc([]string{"--class", "--status", "--since", "--limit"}, func(fl string) bool { return strings.HasPrefix(msg, fl) }) {
				t.Fatalf("filter error %q names no flag", msg)
			}
			if len(msg) > maxErrLen {
				t.Fatalf("filter error of %d bytes", len(msg))
			}
		} else {
			if flt.Class != "" && !slices.Contains(dlq.Classes, flt.Class) {
				t.Fatalf("filter class %q", flt.Class)
			}
			for _, st := range flt.Statuses {
				if !slices.Contains(dlq.Statuses, st) {
					t.Fatalf("filter status %q", st)
				}
			}
			if flt.Since.After(now) || flt.Limit < 0 {
				t.Fatalf("filter since %v limit %d", flt.Since, flt.Limit)
			}
		}
		// IDs and selectors together are refused; a bad id is refused
		// before anything else.
		err = checkSelection(cmd, sel, []string{id})
		switch {
		case checkID(id) != nil:
			if err == nil || !strings.HasPrefix(err.Error(), "no dead letter with id ") {
				t.Fatalf("checkSelection with bad id %q: %v", id, err)
			}
		case sel.given(cmd) && err == nil:
			t.Fatal("checkSelection accepted ids with selectors")
		}
	})
}

// selectorCommandFuzz is selectorCommand with the fuzzed values as flags.
func selectorCommandFuzz(class, status, since, limit string) (*cobra.Command, *selectors, error) {
	var sel selectors
	cmd := &cobra.Command{Use: "x"}
	sel.register(cmd, "every record", 0)
	return cmd, &sel, cmd.ParseFlags([]string{"--class=" + class, "--status=" + status, "--since=" + since, "--limit=" + limit})
}

// FuzzReplayRate parses any --rate as dlq replay does: nothing panics; a
// refused rate gets a usage error naming --rate, an accepted one is what
// dlq's ReplayMany takes (a finite, non-negative number).
func FuzzReplayRate(f *testing.F) {
	for _, s := range []string{"0", "10", "0.5", "-1", "NaN", "Inf", "-Inf", "1e-300", "1e-10", "1e-9", "1e300", "5e-324", "x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var rate float64
		cmd := &cobra.Command{Use: "x"}
		cmd.Flags().Float64Var(&rate, "rate", 0, "")
		if err := cmd.ParseFlags([]string{"--rate=" + s}); err != nil {
			return
		}
		err := checkReplayRate(rate)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--rate ") || exitCode(err) != ExitUsage {
				t.Fatalf("error %q (exit %d) is not a usage error naming --rate", err, exitCode(err))
			}
			return
		}
		if math.IsNaN(rate) || math.IsInf(rate, 0) || rate < 0 {
			t.Fatalf("rate %v accepted", rate)
		}
	})
}
