package lab_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/booture/booture/internal/lab"
)

// A booture killed with kill -9 is shown dead on the others
// within 10 s, and its peer and routes go (its traffic is no longer routed
// to it); once started again it is back.
func TestKilledIsDead(t *testing.T) {
	t.Parallel()
	l := mesh(t, lab.Options{Hosts: 3}, 3)
	h1, h2, h3 := l.H(1), l.H(2), l.H(3)
	st3 := status(t, h3)
	must(t, h3.Kill())
	took, err := lab.WaitPeerState(15*time.Second, "h3", "dead", h1, h2)
	if err != nil {
		t.Fatalf("after kill -9 of h3: %v", err)
	}
	t.Logf("kill -9 of h3: dead on h1 and h2 after %v", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("h3 was shown dead after %v, want within 10s", took.Round(time.Millisecond))
	}
	for _, h := range []*lab.Host{h1, h2} {
		must(t, lab.Eventually(t.Context(), 3*time.Second, 100*time.Millisecond, func() error {
			dev, err := h.WG()
			if err != nil {
				return err
			}
			if _, ok := dev.Peer(st3.PublicKey); ok {
				return fmt.Errorf("%s still has dead h3 as WireGuard peer", h.Name)
			}
			routes, err := h.MeshRoutes()
			if err != nil {
				return err
			}
			if lab.HasRoute(routes, prefix(t, st3.SiteIPv4)) || lab.HasRoute(routes, prefix(t, st3.SiteIPv6)) {
				return fmt.Errorf("%s still routes dead h3's site: %v", h.Name, routes)
			}
			return nil
		}))
	}
	must(t, lab.CheckMesh(h1, h2))
	must(t, h3.Start())
	must(t, lab.WaitMesh(20*time.Second, l.Hosts...))
	must(t, lab.PingMesh(pingWait, l.Hosts...))
}

// EnvCut is the duration of TestLinkCut's cut (default 2m).
const EnvCut = "BOOTURE_LAB_CUT"

// After a long cut of a booture's underlay link (2 minutes
// by default: BOOTURE_LAB_CUT), the mesh re-forms by itself within 30 s of
// the link coming back.
func TestLinkCut(t *testing.T) {
	t.Parallel()
	cut := 2 * time.Minute
	if s := os.Getenv(EnvCut); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("%s=%q: %v", EnvCut, s, err)
		}
		cut = d
	}
	l := mesh(t, lab.Options{Hosts: 3}, 3)
	h1, h2, h3 := l.H(1), l.H(2), l.H(3)
	st1 := status(t, h1)

	must(t, h3.Cut())
	t0 := time.Now()
	took, err := lab.WaitPeerState(min(cut, 15*time.Second), "h3", "dead", h1, h2)
	if err == nil {
		t.Logf("h3 cut off: dead on h1 and h2 after %v", took.Round(time.Millisecond))
	} else if cut >= 15*time.Second {
		t.Errorf("h3 cut off: %v", err)
	}
	if h3.CanPing(st1.MeshIPv4) {
		t.Errorf("h3 still reaches h1 while its link is cut")
	}
	time.Sleep(cut - time.Since(t0))
	must(t, h3.Uncut())
	t0 = time.Now()
	if err := lab.WaitMesh(30*time.Second, l.Hosts...); err != nil {
		t.Fatalf("the mesh did not re-form within 30s after a %v cut: %v", cut, err)
	}
	if err := lab.PingMesh(max(time.Second, 30*time.Second-time.Since(t0)), l.Hosts...); err != nil {
		t.Fatalf("the mesh did not re-form within 30s after a %v cut: %v", cut, err)
	}
	t.Logf("after a %v cut of h3's link: mesh re-formed %v after the link came back", cut, time.Since(t0).Round(time.Millisecond))
}

// Packet loss on one booture's link (nftables numgen: 5% of UDP packets
// dropped each way) must not make the others declare it dead, nor drop it
// from WireGuard.
func TestLossIsNotDeath(t *testing.T) {
	t.Parallel()
	l := mesh(t, lab.Options{Hosts: 3}, 3)
	h1, h2, h3 := l.H(1), l.H(2), l.H(3)
	st3 := status(t, h3)
	must(t, h3.SetLoss(5))
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, h := range []*lab.Host{h1, h2} {
			st := status(t, h)
			if p, _ := lab.FindPeer(st, "h3"); p.State == "dead" || p.State == "left" {
				t.Fatalf("with 5%% loss on its link, h3 is %s on %s", p.State, h.Name)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	p, err := h1.Ping(st3.MeshIPv4, 20, 200*time.Millisecond)
	must(t, err)
	t.Logf("h1 -> h3 with 5%% UDP loss each way on h3: %d/%d replies", p.Received, p.Sent)
	if p.Received == 0 {
		t.Errorf("no ping passed with 5%% loss")
	}
	must(t, h3.SetLoss(0))
	must(t, lab.WaitMesh(10*time.Second, l.Hosts...))
}
