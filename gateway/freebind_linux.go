package gateway

import (
	"fmt"
	"strings"
	"syscall"
)

// ipv6Freebind is IPV6_FREEBIND (Linux 4.15), missing from package syscall.
const ipv6Freebind = 78

// freebind sets IP_FREEBIND: binding succeeds before the address is
// assigned (the WireGuard interface comes up later) or while it is still
// tentative (IPv6 duplicate address detection).
func freebind(network, _ string, c syscall.RawConn) error {
	var opErr error
	err := c.Control(func(fd uintptr) {
		if strings.HasSuffix(network, "6") {
			if opErr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, ipv6Freebind, 1); opErr == nil {
				return
			}
		}
		opErr = syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_FREEBIND, 1)
	})
	if err == nil {
		err = opErr
	}
	if err != nil {
		return fmt.Errorf("setting IP_FREEBIND: %w", err)
	}
	return nil
}
