package cli

import (
	"bufio"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// itemBar returns a progress bar on w that counts items (unit names them:
// "tasks", "records") with their rate and, when total is known (not -1),
// the time left; with total -1 it shows the count, the rate and the time
// spent. It returns nil when on is false: callers pass whether w is a
// terminal, so that no bar reaches a pipe or a file. Finish or Exit a bar
// of unknown total: its spinner redraws until then.
func itemBar(w io.Writer, on bool, total int64, desc, unit string) *progressbar.ProgressBar {
	if !on {
		return nil
	}
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString(unit),
		progressbar.OptionSetPredictTime(total >= 0), progressbar.OptionSetElapsedTime(total < 0),
		progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
	// Start the clock now: a bar started by its first Add would take the
	// first items as done in no time, at an absurd rate.
	_ = bar.RenderBlank()
	return bar
}

// countBatchLines counts the lines of r that a batch enqueues: those with
// anything but JSON whitespace (space, tab, CR, LF), as the batch reader
// skips the others. A bar's total; one sequential read, no parsing.
func countBatchLines(r io.Reader) (int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var n int64
	content := false
	for {
		frag, err := br.ReadSlice('\n')
		for _, c := range frag {
			switch c {
			case '\n':
				if content {
					n++
				}
				content = false
			case ' ', '\t', '\r':
			default:
				content = true
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF:
			if content {
				n++
			}
			return n, nil
		case err != nil:
			return n, err
		}
	}
}
