//go:build !unix

package binarytest

import (
	"errors"
	"os"
)

var errNoStop = errors.New("SIGSTOP and SIGCONT need a unix system")

func stop(*os.Process) error { return errNoStop }

func cont(*os.Process) error { return errNoStop }
