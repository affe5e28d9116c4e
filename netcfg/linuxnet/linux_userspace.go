//go:build linux

package linuxnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
)

// UAPIDir is where userspace WireGuard implementations put their control
// sockets (fixed by wireguard-go, wgctrl and wg(8)). It is not per network
// namespace: interface names must be unique across namespaces.
const UAPIDir = "/var/run/wireguard"

// UAPISocket returns the control socket path of a userspace interface.
func UAPISocket(iface string) string { return filepath.Join(UAPIDir, iface+".sock") }

// userspaceDevice is an embedded wireguard-go device with its UAPI socket,
// so that wgctrl and wg(8) configure and show it like a kernel one.
type userspaceDevice struct {
	name string
	log  *slog.Logger
	dev  *device.Device
	uapi net.Listener
	done chan struct{} // closed when the accept loop ends
}

func newUserspaceDevice(log *slog.Logger, name string, mtu int) (*userspaceDevice, error) {
	tdev, err := tun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("creating tun device %s: %w", name, err)
	}
	if real, err := tdev.Name(); err != nil || real != name {
		_ = tdev.Close()
		return nil, fmt.Errorf("creating tun device %s: got name %q (%v)", name, real, err)
	}
	dlog := log.With("wireguard", "userspace")
	logger := &device.Logger{
		Verbosef: func(format string, args ...any) {
			if dlog.Enabled(context.Background(), slog.LevelDebug) {
				dlog.Debug(fmt.Sprintf(format, args...))
			}
		},
		Errorf: func(format string, args ...any) { dlog.Warn(fmt.Sprintf(format, args...)) },
	}
	u := &userspaceDevice{
		name: name,
		log:  log,
		// The batches stay wireguard-go's (128): its UDP receive with GRO
		// assumes full-size batches, and the TUN read uses the larger of
		// the two. They cost ~24 MiB of buffers, most of the daemon's heap.
		dev: device.NewDevice(tdev, conn.NewDefaultBind(), logger),
	}
	if err := u.listen(); err != nil {
		u.dev.Close()
		return nil, err
	}
	return u, nil
}

// listen opens the UAPI socket and serves it.
func (u *userspaceDevice) listen() error {
	f, err := ipc.UAPIOpen(u.name)
	if err != nil {
		return fmt.Errorf("opening uapi socket %s: %w", UAPISocket(u.name), err)
	}
	ln, err := ipc.UAPIListen(u.name, f)
	_ = f.Close() // UAPIListen keeps its own copy of the descriptor
	if err != nil {
		_ = os.Remove(UAPISocket(u.name))
		return fmt.Errorf("listening on uapi socket %s: %w", UAPISocket(u.name), err)
	}
	u.uapi = ln
	u.done = make(chan struct{})
	go func(ln net.Listener, done chan struct{}) {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go u.dev.IpcHandle(c)
		}
	}(ln, u.done)
	return nil
}

// ensureSocket re-opens the UAPI socket if it was deleted by hand (the
// listener then stops), so that wgctrl can keep configuring the device.
func (u *userspaceDevice) ensureSocket() error {
	if _, err := os.Stat(UAPISocket(u.name)); err == nil {
		return nil
	}
	u.log.Warn("uapi socket missing, re-creating it", "socket", UAPISocket(u.name))
	u.stopListening()
	return u.listen()
}

func (u *userspaceDevice) stopListening() {
	if u.uapi == nil {
		return
	}
	_ = u.uapi.Close()
	select {
	case <-u.done:
	case <-time.After(5 * time.Second):
		u.log.Warn("uapi accept loop did not stop")
	}
	u.uapi = nil
}

// close stops the device (closing the tun removes the interface and its
// routes) and removes the socket.
func (u *userspaceDevice) close() error {
	u.stopListening()
	u.dev.Close()
	if err := os.Remove(UAPISocket(u.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing uapi socket: %w", err)
	}
	return nil
}
