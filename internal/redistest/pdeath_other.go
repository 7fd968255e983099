//go:build !linux

package redistest

import "os/exec"

// KillWithParent does nothing outside Linux.
func KillWithParent(*exec.Cmd) {}
