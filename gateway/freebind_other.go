//go:build !linux

package gateway

import "syscall"

// freebind does nothing where IP_FREEBIND does not exist: bind the
// addresses after they are assigned.
func freebind(string, string, syscall.RawConn) error { return nil }
