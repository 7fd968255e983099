//go:build !linux

package bench

import "os/exec"

// dieWithParent does nothing outside Linux: there the child is stopped on
// every path out of the binary row, but not when the bench is killed.
func dieWithParent(*exec.Cmd) {}
