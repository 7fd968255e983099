package bench

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the process cmd starts get SIGKILL when the bench
// process dies, so that a bench killed or crashed leaves no worker behind.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
