package lab_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/booture/booture/internal/lab"
)

// resync is the --resync of the reconcile test: hand-made changes must be
// repaired within it.
const resync = 2 * time.Second

// While a booture joins and another leaves, a continuous ping between two
// other bootures loses nothing and their WireGuard session is not reset;
// the leaving booture is seen "left" and its peer and routes are removed; a
// peer removed and routes deleted by hand are repaired by the periodic
// resync. How fast a leave is seen is a figure of the benchmarks, not a
// check here: a loaded machine must not fail this test.
func TestIncrementalReconcile(t *testing.T) {
	t.Parallel()
	l := startFounderFirst(t, lab.Options{Hosts: 4, Resync: resync})
	h1, h2, h3, h4 := l.H(1), l.H(2), l.H(3), l.H(4)
	must(t, lab.JoinAll(h1, h2, h3))
	must(t, lab.WaitMesh(20*time.Second, h1, h2, h3))
	st1, st2, st3 := status(t, h1), status(t, h2), status(t, h3)

	// Warm up the h1-h2 session, then take its baseline on both sides.
	must(t, h1.WaitPing(st2.MeshIPv4, pingWait))
	must(t, h2.WaitPing(st1.MeshIPv6, pingWait))
	session := func(h *lab.Host, peerKey string) lab.WGPeer {
		t.Helper()
		dev, err := h.WG()
		must(t, err)
		p, ok := dev.Peer(peerKey)
		if !ok {
			t.Fatalf("%s has no WireGuard peer %s", h.Name, peerKey)
		}
		return p
	}
	// The baseline is taken once the pair's plan has settled: the
	// responder turns its keepalive on responderDelay (5 s) after the peer
	// came up, which may start one more handshake, by design and not a
	// reset.
	must(t, lab.Eventually(context.Background(), 15*time.Second, 200*time.Millisecond, func() error {
		a, b := session(h1, st2.PublicKey), session(h2, st1.PublicKey)
		if a.Keepalive == "off" || b.Keepalive == "off" {
			return fmt.Errorf("keepalive h1->h2 %s, h2->h1 %s", a.Keepalive, b.Keepalive)
		}
		return nil
	}))
	time.Sleep(time.Second) // a handshake the keepalive started is done
	base12, base21 := session(h1, st2.PublicKey), session(h2, st1.PublicKey)
	if base12.LatestHandshake.IsZero() || base21.LatestHandshake.IsZero() {
		t.Fatalf("no handshake between h1 and h2 yet: %+v %+v", base12, base21)
	}

	// Continuous pings both ways (IPv4 one way, IPv6 the other) while h4
	// joins and h3 leaves.
	const count = 60 // 12 s at 0.2 s
	type pingOut struct {
		res lab.PingResult
		err error
	}
	p12, p21 := make(chan pingOut, 1), make(chan pingOut, 1)
	go func() { r, err := h1.Ping(st2.MeshIPv4, count, 200*time.Millisecond); p12 <- pingOut{r, err} }()
	go func() { r, err := h2.Ping(st1.MeshIPv6, count, 200*time.Millisecond); p21 <- pingOut{r, err} }()

	time.Sleep(time.Second)
	t0 := time.Now()
	must(t, h4.JoinVia(h3))
	must(t, lab.WaitMesh(10*time.Second, h1, h2, h3, h4))
	t.Logf("h4 joined through h3: 4-booture mesh in %v", time.Since(t0).Round(time.Millisecond))
	time.Sleep(time.Second)

	r := h3.CLI("leave")
	must(t, r.Error())
	left, err := lab.WaitPeerState(5*time.Second, "h3", "left", h1, h2, h4)
	if err != nil {
		t.Errorf("after h3's leave: %v", err)
	}
	t.Logf("h3 left: seen 'left' by h1, h2, h4 after %v", left.Round(time.Millisecond))

	for _, c := range []struct {
		name string
		ch   chan pingOut
	}{{"h1 -> h2 (IPv4)", p12}, {"h2 -> h1 (IPv6)", p21}} {
		o := <-c.ch
		if o.err != nil {
			t.Errorf("ping %s: %v", c.name, o.err)
			continue
		}
		t.Logf("ping %s during the join and the leave: %d sent, %d received", c.name, o.res.Sent, o.res.Received)
		if o.res.Sent < count || o.res.Lost() != 0 {
			t.Errorf("ping %s lost %d of %d packets while others joined and left:\n%s", c.name, o.res.Lost(), o.res.Sent, o.res.Output)
		}
	}
	// The h1-h2 session was never reset: its counters only grew (a removed
	// and re-added peer starts again from zero). A newer handshake alone is
	// no reset: WireGuard may start one at any time (both sides of a pair
	// initiate, keepalives begin, rekeys), keeping the peer and its counters.
	for _, c := range []struct {
		h    *lab.Host
		key  string
		base lab.WGPeer
	}{{h1, st2.PublicKey, base12}, {h2, st1.PublicKey, base21}} {
		now := session(c.h, c.key)
		if now.RxBytes < c.base.RxBytes || now.TxBytes < c.base.TxBytes || now.LatestHandshake.Before(c.base.LatestHandshake) {
			t.Errorf("%s's WireGuard session with its peer was reset: before %+v, after %+v", c.h.Name, c.base, now)
		}
	}

	// h3's peer and routes are gone on the others.
	for _, h := range []*lab.Host{h1, h2, h4} {
		must(t, lab.Eventually(t.Context(), 5*time.Second, 100*time.Millisecond, func() error {
			dev, err := h.WG()
			if err != nil {
				return err
			}
			if _, ok := dev.Peer(st3.PublicKey); ok {
				return fmt.Errorf("%s still has h3 as WireGuard peer", h.Name)
			}
			routes, err := h.MeshRoutes()
			if err != nil {
				return err
			}
			for _, s := range []string{st3.SiteIPv4, st3.SiteIPv6} {
				if lab.HasRoute(routes, prefix(t, s)) {
					return fmt.Errorf("%s still routes h3's site %s: %v", h.Name, s, routes)
				}
			}
			return nil
		}))
	}
	must(t, lab.CheckMesh(h1, h2, h4))

	// Drift: remove h2's peer and its routes by hand on h1.
	r = h1.Run("wg", "set", h1.Iface, "peer", st2.PublicKey, "remove")
	must(t, r.Error())
	must(t, h1.Run("ip", "route", "del", st2.SiteIPv4, "dev", h1.Iface).Error())
	must(t, h1.Run("ip", "-6", "route", "del", st2.SiteIPv6, "dev", h1.Iface).Error())
	t0 = time.Now()
	if err := lab.Eventually(t.Context(), resync+3*time.Second, 100*time.Millisecond, func() error {
		return lab.CheckMesh(h1, h2)
	}); err != nil {
		t.Errorf("hand-made changes not repaired within the resync period (%v): %v", resync, err)
	}
	t.Logf("wg set peer remove + ip route del on h1 repaired after %v (resync %v)", time.Since(t0).Round(time.Millisecond), resync)
	must(t, lab.PingMesh(pingWait, h1, h2, h4))
}
