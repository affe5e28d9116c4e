//go:build !linux

package host

import "syscall"

// sysProcAttr: without a parent-death signal, the SDK's parent watch is
// what ends plugins whose daemon died.
func sysProcAttr() *syscall.SysProcAttr { return nil }
