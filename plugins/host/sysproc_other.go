//go:build !linux

package host

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// sysProcAttr: without a parent-death signal, the SDK's parent watch is
// what ends plugins whose daemon died.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// fileOwner is not checked here: only the file's mode is.
func fileOwner(os.FileInfo) (int, bool) { return 0, false }

// runAs: plugins run as another user on Linux only.
func runAs(*exec.Cmd, *os.File, *User) error {
	return errors.New("running plugins as another user is supported on Linux only; set plugin_user = \"root\"")
}
