//go:build !linux

package api

import "net"

// peerUID is unknown off Linux: backups are then refused over the socket.
func peerUID(net.Conn) (int, bool) { return 0, false }
