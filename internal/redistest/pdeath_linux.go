package redistest

import (
	"os/exec"
	"syscall"
)

// KillWithParent makes the process cmd starts die with the test process
// (SIGKILL on Linux), so that a test binary that panics on -timeout leaves
// no server or worker behind.
func KillWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
