// Package lab runs bootures in network namespaces on one Linux machine: the
// harness of the lab tests (test/lab), the benchmarks and the demo
// (examples/lab).
//
// A Lab is a bridge in a namespace of its own (never the root namespace)
// with hosts attached by veth pairs on 198.51.100.0/24 (eth0, MTU 1400, lo
// up), each able to run the real bootured binary; optionally a second link
// behind host 1 to an "internet" namespace on 203.0.113.0/24, and member
// namespaces that bring up a real WireGuard client with Debian's wg-quick and
// wireguard-go from the configuration `booture member add` printed.
//
// Every name a lab makes (namespaces, WireGuard interfaces, whose control
// sockets in /var/run/wireguard are shared by all namespaces) carries a short
// random id, so that labs of parallel tests never collide. Everything is
// bounded in time, and Close (t.Cleanup with New) kills every process and
// removes every namespace, socket and temporary file, also when a test fails
// or panics. A janitor removes what crashed earlier runs left behind: each
// lab registers itself in RunDir with the pid of the process that made it.
//
// Labs need root and the tools ip, wg, wg-quick, wireguard-go, nft and ping:
// Require skips a test with a clear message when one is missing (or, when
// BOOTURE_LAB_REQUIRE=1 as in CI, fails it).
//
// Traffic only ever goes to the lab's own namespaces, on the documentation
// ranges of TESTING.md and the mesh pool inside WireGuard.
package lab
