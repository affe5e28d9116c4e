package mesh

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/booture/booture/internal/waitfor"
	"github.com/booture/booture/key"
)

// startGuardedNode starts a node whose inbound limits count loopback
// sources too, as they count LAN hosts in production.
func startGuardedNode(t testing.TB, name string) *testNode {
	t.Helper()
	priv, err := key.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	n, err := New(Config{
		Name: name, StateDir: dir, PrivateKey: priv, Bind: loopback, Advertise: loopback,
		WireGuardEndpoint: netip.AddrPortFrom(loopback, 51820), Version: "test",
		Logger: testLogger(t).With("node", name), RejoinInterval: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	l := defaultInboundLimits()
	l.limitLoopback = true
	n.guard = newInboundGuard(l, n.log)
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return &testNode{Node: n, dir: dir, priv: priv, t: t}
}

// floodStart is what a flood stream sends first: a join or catch-up
// declaring the largest handshake frame, or a gossip stream declaring a
// message of 1 MiB.
func floodStart(i int) []byte {
	switch i % 3 {
	case 0:
		return append(binary.BigEndian.AppendUint32(append([]byte(nil), magicJoin...), maxFrame), frameSealed)
	case 1:
		return append(binary.BigEndian.AppendUint32(append([]byte(nil), magicCatchUp...), maxFrame), frameSealed)
	}
	return binary.BigEndian.AppendUint32([]byte{gossipStreamStart}, 1<<20)
}

// flood opens count streams to addr from sources loopback addresses
// 127.0.1.1 and up, each sending floodStart and then fill bytes, and leaves
// them open. It returns once every stream was written (or refused).
func flood(t testing.TB, addr string, count, sources, fill int) {
	t.Helper()
	filler := make([]byte, fill)
	var wg sync.WaitGroup
	for i := range count {
		src := netip.AddrFrom4([4]byte{127, 0, 1, byte(1 + i%sources)})
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("flood stream %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		wg.Go(func() {
			c.SetWriteDeadline(time.Now().Add(3 * time.Second))
			if _, err := c.Write(floodStart(i)); err == nil {
				c.Write(filler)
			}
		})
	}
	wg.Wait()
}

// TestFloodBeforeAuthentication: 400 streams from 20 LAN-like sources
// declare the largest frames (joins and catch-ups) and gossip messages of
// 1 MiB (sending 256 KiB of them). What the booture allocates meanwhile
// stays bounded, and a real booture still joins. Before, each handshake
// allocated its declared 1 MiB at once and memberlist buffered every
// gossip stream: over 300 MB here.
func TestFloodBeforeAuthentication(t *testing.T) {
	a := startGuardedNode(t, "a")
	b := startTestNode(t, "b", "", key.PrivateKey{})
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	flood(t, a.View().Self.Gossip.String(), 400, 20, 256<<10)
	b.joinVia(a)
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %.1f MiB during the flood; %d streams refused", float64(allocated)/(1<<20), a.guard.refused.Load())
	if allocated > 48<<20 {
		t.Fatalf("allocated %.1f MiB during a flood of unauthenticated streams, want under 48", float64(allocated)/(1<<20))
	}
	waitfor.Cond(t, 30*time.Second, "a and b in one mesh", func() bool { return converged([]*testNode{a, b}) })
}
