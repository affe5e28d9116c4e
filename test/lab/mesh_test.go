package lab_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/internal/lab"
)

// A booture with empty state founds a mesh of one; invite
// and join link three; every booture has the others as WireGuard peers
// (key, endpoint, site /24 and /64) with routes; pings pass both ways over
// IPv4 and IPv6; a non-founder can invite.
//
// The joiners are started (and so found their meshes of one) before the
// inviter: `booture join` must still make the joiner join the inviter's
// mesh (SPEC), and the inviter keep its mesh, site and addresses.
func TestFoundInviteJoin(t *testing.T) {
	t.Parallel()
	l := lab.New(t, lab.Options{Hosts: 3})
	h1, h2, h3 := l.H(1), l.H(2), l.H(3)
	must(t, l.StartAll(h2, h3))
	afterMillisecond(t)
	must(t, h1.Start())

	ids := map[string]bool{}
	for _, h := range l.Hosts {
		st := status(t, h)
		if len(st.Peers) != 0 || st.Site != 1 || st.MeshIPv4 != "10.77.1.1" || st.Name != h.Name {
			t.Errorf("%s: a fresh booture should found a mesh of one on site 1: %+v", h.Name, st)
		}
		if st.WireGuard.Interface != h.Iface || st.WireGuard.Mode != "userspace" || st.WireGuard.ListenPort != 51820 {
			t.Errorf("%s: wireguard %+v", h.Name, st.WireGuard)
		}
		if !strings.HasPrefix(st.MeshIPv6, "fd") || !strings.HasSuffix(st.MeshIPv6, ":1::1") {
			t.Errorf("%s: mesh IPv6 %q is not a ULA ...:1::1", h.Name, st.MeshIPv6)
		}
		ids[st.MeshID] = true
	}
	if len(ids) != 3 {
		t.Errorf("three fresh bootures should found three meshes, got %d mesh ids", len(ids))
	}

	before1 := status(t, h1)
	t0 := time.Now()
	tok, err := h1.Invite("")
	must(t, err)
	r := h2.CLI("join", tok)
	must(t, r.Error())
	t.Logf("h2$ booture join TOKEN-OF-h1: %s", strings.TrimSpace(r.Stdout))
	if after := status(t, h1); after.MeshID != before1.MeshID || after.Site != before1.Site || after.MeshIPv4 != before1.MeshIPv4 || after.MeshIPv6 != before1.MeshIPv6 {
		t.Errorf("h2 joined h1's invitation, but h1 moved: mesh %s site %d %s before, mesh %s site %d %s after "+
			"(join must make the joiner join the inviter's mesh; the inviter's members would lose their configuration)",
			before1.MeshID, before1.Site, before1.MeshIPv4, after.MeshID, after.Site, after.MeshIPv4)
	}
	if st2 := status(t, h2); st2.MeshID != before1.MeshID {
		t.Errorf("h2 is in mesh %s after joining h1's, which was %s", st2.MeshID, before1.MeshID)
	}
	// h3 joins through h2, which is not the founder.
	tok, err = h2.Invite("")
	must(t, err)
	r = h3.CLI("join", tok)
	must(t, r.Error())
	if !strings.Contains(r.Stdout, "h2") {
		t.Errorf("join should name the inviter h2: %q", r.Stdout)
	}
	must(t, lab.WaitMesh(15*time.Second, l.Hosts...))
	t.Logf("3 bootures converged %v after the first join", time.Since(t0).Round(time.Millisecond))

	sts, err := lab.Statuses(l.Hosts...)
	must(t, err)
	sites := map[int]string{}
	for i, st := range sts {
		if other, dup := sites[st.Site]; dup {
			t.Errorf("%s and %s share site %d", other, l.Hosts[i].Name, st.Site)
		}
		sites[st.Site] = st.Name
		if st.MeshID != sts[0].MeshID {
			t.Errorf("%s is in mesh %s, h1 in %s", st.Name, st.MeshID, sts[0].MeshID)
		}
	}
	// WireGuard peers carry the keepalive that keeps NAT mappings open
	// (the booture with the higher key adds it a few seconds after the
	// peer appears, at its next reconcile: see mesh.keepaliveDelay).
	must(t, lab.Eventually(context.Background(), 30*time.Second, 500*time.Millisecond, func() error {
		dev, err := h1.WG()
		if err != nil {
			return err
		}
		if len(dev.Peers) != 2 {
			return fmt.Errorf("h1 has %d WireGuard peers, want 2: %+v", len(dev.Peers), dev.Peers)
		}
		for _, p := range dev.Peers {
			if p.Keepalive != "25" {
				return fmt.Errorf("h1: peer %s keepalive %q, want 25", p.PublicKey, p.Keepalive)
			}
		}
		return nil
	}))
	must(t, lab.PingMesh(pingWait, l.Hosts...))

	// peers --json lists the same as status.
	peers, err := h3.Peers()
	must(t, err)
	if len(peers) != 2 {
		t.Errorf("h3 peers --json: %+v", peers)
	}
	for _, p := range peers {
		if p.State != "alive" || p.LastHandshake == nil || p.RxBytes == 0 || p.TxBytes == 0 {
			t.Errorf("h3 peers --json: %+v: want alive with a handshake and traffic", p)
		}
	}
}

// After a restart, or kill -9 and start, a booture has the
// same key, site and addresses, and the mesh re-converges by itself.
func TestRestartAndCrashKeepIdentity(t *testing.T) {
	t.Parallel()
	l := mesh(t, lab.Options{Hosts: 3}, 3)
	h2, h3 := l.H(2), l.H(3)
	before, err := lab.Statuses(l.Hosts...)
	must(t, err)
	key2, err := os.ReadFile(filepath.Join(h2.StateDir, "private.key"))
	must(t, err)

	same := func(h *lab.Host, was api.Status) {
		t.Helper()
		st := status(t, h)
		if st.PublicKey != was.PublicKey || st.Site != was.Site || st.MeshIPv4 != was.MeshIPv4 ||
			st.MeshIPv6 != was.MeshIPv6 || st.SiteIPv4 != was.SiteIPv4 || st.SiteIPv6 != was.SiteIPv6 || st.MeshID != was.MeshID {
			t.Errorf("%s changed identity:\nbefore %+v\nafter  %+v", h.Name, was, st)
		}
	}

	// Graceful restart. A stopped booture removes its interface (and so its
	// routes), its WireGuard control socket and its nftables table.
	must(t, h2.Stop())
	if r := h2.Run("ip", "link", "show", h2.Iface); r.OK() {
		t.Errorf("h2 stopped but its interface %s is still there", h2.Iface)
	}
	if r := h2.Run("nft", "list", "table", "inet", "booture"); r.OK() {
		t.Errorf("h2 stopped but its nftables table is still there:\n%s", r.Stdout)
	}
	if _, err := os.Stat("/var/run/wireguard/" + h2.Iface + ".sock"); err == nil {
		t.Errorf("h2 stopped but its WireGuard control socket is still there")
	}
	t0 := time.Now()
	must(t, h2.Start())
	same(h2, before[1])
	if k, _ := os.ReadFile(filepath.Join(h2.StateDir, "private.key")); string(k) != string(key2) {
		t.Errorf("h2's key file changed across a restart")
	}
	must(t, lab.WaitMesh(20*time.Second, l.Hosts...))
	must(t, lab.PingMesh(pingWait, l.Hosts...))
	t.Logf("after a restart of h2: mesh again in %v", time.Since(t0).Round(time.Millisecond))

	// Crash.
	must(t, h3.Kill())
	t0 = time.Now()
	must(t, h3.Start())
	same(h3, before[2])
	must(t, lab.WaitMesh(20*time.Second, l.Hosts...))
	must(t, lab.PingMesh(pingWait, l.Hosts...))
	t.Logf("after kill -9 and start of h3: mesh again in %v", time.Since(t0).Round(time.Millisecond))

	// The others still hold the same view of everyone.
	for i, h := range l.Hosts {
		same(h, before[i])
	}
}

// Three bootures started together with cross joins (h1
// joins h2, h2 joins h3, h3 joins h1, all at once) form one mesh.
func TestCrossJoin(t *testing.T) {
	t.Parallel()
	l := start(t, lab.Options{Hosts: 3})
	tokens := make([]string, 3)
	for i, h := range l.Hosts {
		tok, err := h.Invite("")
		must(t, err)
		tokens[i] = tok
	}
	results := make([]lab.Result, 3)
	var wg sync.WaitGroup
	for i, h := range l.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = h.CLI("join", tokens[(i+1)%3])
		}()
	}
	t0 := time.Now()
	wg.Wait()
	for i, r := range results {
		t.Logf("h%d joins h%d: exit %d: %s%s", i+1, (i+1)%3+1, r.Code, r.Stdout, r.Stderr)
	}
	if err := lab.WaitMesh(30*time.Second, l.Hosts...); err != nil {
		t.Fatalf("cross joins did not form one mesh: %v", err)
	}
	t.Logf("one mesh %v after the cross joins", time.Since(t0).Round(time.Millisecond))
	must(t, lab.PingMesh(pingWait, l.Hosts...))
}

// Two meshes with different keys on one LAN never mix.
func TestTwoMeshesOneLAN(t *testing.T) {
	t.Parallel()
	l := start(t, lab.Options{Hosts: 4})
	h1, h2, h3, h4 := l.H(1), l.H(2), l.H(3), l.H(4)
	var wg sync.WaitGroup
	var e1, e2 error
	wg.Add(2)
	go func() { defer wg.Done(); e1 = h2.JoinVia(h1) }()
	go func() { defer wg.Done(); e2 = h4.JoinVia(h3) }()
	wg.Wait()
	must(t, e1)
	must(t, e2)
	must(t, lab.WaitMesh(15*time.Second, h1, h2))
	must(t, lab.WaitMesh(15*time.Second, h3, h4))
	sts, err := lab.Statuses(l.Hosts...)
	must(t, err)
	if sts[0].MeshID == sts[2].MeshID {
		t.Fatalf("the two meshes have the same id %s", sts[0].MeshID)
	}
	keyOf := map[string]string{}
	for _, st := range sts {
		keyOf[st.PublicKey] = st.Name
	}
	partner := map[string]string{"h1": "h2", "h2": "h1", "h3": "h4", "h4": "h3"}
	// Gossip keeps probing for a while: the meshes must stay apart.
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, h := range l.Hosts {
			st := status(t, h)
			for _, p := range st.Peers {
				if p.Name != partner[h.Name] {
					t.Fatalf("%s lists %s (%s) of the other mesh", h.Name, p.Name, p.State)
				}
			}
			dev, err := h.WG()
			must(t, err)
			for _, p := range dev.Peers {
				if keyOf[p.PublicKey] != partner[h.Name] {
					t.Fatalf("%s has a WireGuard peer %s (%s) of the other mesh", h.Name, p.PublicKey, keyOf[p.PublicKey])
				}
			}
		}
		time.Sleep(time.Second)
	}
	must(t, lab.CheckMesh(h1, h2))
	must(t, lab.CheckMesh(h3, h4))
	must(t, lab.PingMesh(pingWait, h1, h2))
	must(t, lab.PingMesh(pingWait, h3, h4))
}
