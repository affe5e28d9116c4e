//go:build !linux

package host

import (
	"os"
	"syscall"
)

// sysProcAttr: without a parent-death signal, the SDK's parent watch is
// what ends plugins whose daemon died.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// fileOwner is not checked here: only the file's mode is.
func fileOwner(os.FileInfo) (int, bool) { return 0, false }
