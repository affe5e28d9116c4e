// Package linuxnet applies a netcfg.Config to a Linux host: wgctrl for
// WireGuard (the kernel's, or an embedded wireguard-go where the module is
// missing), netlink for the link, addresses and routes, nftables for the
// packet filter and /proc/sys for forwarding.
//
// It is the only package of booture that talks to the kernel's network
// stack. The model it applies (Config, Diff, Op, the firewall description)
// lives in package netcfg, which imports nothing OS-specific, so that the
// mesh and the tests that only plan a network never link netlink, nftables
// or wireguard-go.
package linuxnet
