package fakenet_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/booture/booture/key"
	"github.com/booture/booture/netcfg"
	"github.com/booture/booture/netcfg/fakenet"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update if intended)\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func testRaw(n byte) [key.Len]byte {
	var k [key.Len]byte
	for i := range k {
		k[i] = n
	}
	return k
}

func pubKey(n byte) key.PublicKey   { return key.PublicKeyFromRaw32(testRaw(n)) }
func privKey(n byte) key.PrivateKey { return key.PrivateKeyFromRaw32(testRaw(n)) }

func pfxs(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, v := range s {
		out[i] = netip.MustParsePrefix(v)
	}
	return out
}

func booturePeer(n byte) netcfg.Peer {
	return netcfg.Peer{
		PublicKey:           pubKey(n),
		Endpoint:            netip.MustParseAddrPort(fmt.Sprintf("198.51.100.%d:51820", n)),
		AllowedIPs:          pfxs(fmt.Sprintf("10.77.%d.0/24", n), fmt.Sprintf("fd00:77:1:%d::/64", n)),
		PersistentKeepalive: 25 * time.Second,
	}
}

func memberPeer(n byte) netcfg.Peer {
	return netcfg.Peer{PublicKey: pubKey(100 + n), AllowedIPs: pfxs(fmt.Sprintf("10.77.1.%d/32", n), fmt.Sprintf("fd00:77:1:1::%d/128", n))}
}

func config(bootures []byte, members []byte) netcfg.Config {
	c := netcfg.Config{
		Interface:   "booture0",
		PrivateKey:  privKey(1),
		ListenPort:  51820,
		Addresses:   pfxs("10.77.1.1/24", "fd00:77:1:1::1/64"),
		Unreachable: pfxs("10.77.0.0/16", "fd00:77:1::/48"),
		Firewall: netcfg.Firewall{
			Enabled:  true,
			MeshIPv4: netip.MustParsePrefix("10.77.0.0/16"),
			MeshIPv6: netip.MustParsePrefix("fd00:77:1::/48"),
			TCPPorts: []uint16{80, 53},
			UDPPorts: []uint16{53},
		},
	}
	for _, b := range bootures {
		p := booturePeer(b)
		c.Peers = append(c.Peers, p)
		c.Routes = append(c.Routes, p.AllowedIPs...)
	}
	for _, m := range members {
		c.Peers = append(c.Peers, memberPeer(m))
	}
	return c
}

func mustApply(t *testing.T, f *fakenet.Fake, cfg netcfg.Config) {
	t.Helper()
	if err := f.Apply(context.Background(), cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// assertConverged checks that another Apply of cfg changes nothing.
func assertConverged(t *testing.T, f *fakenet.Fake, cfg netcfg.Config) {
	t.Helper()
	mustApply(t, f, cfg)
	if ops := f.LastOpLines(); len(ops) != 0 {
		t.Fatalf("second Apply of the same config changed:\n%s", strings.Join(ops, "\n"))
	}
}

func TestFirstApplyGolden(t *testing.T) {
	f := fakenet.New()
	cfg := config([]byte{2, 3}, []byte{9})
	mustApply(t, f, cfg)
	golden(t, "first-apply-ops", strings.Join(f.LastOpLines(), "\n")+"\n")
	golden(t, "first-apply-state", f.String())
	assertConverged(t, f, cfg)
}

func TestJoiningOneBootureTouchesNothingElse(t *testing.T) {
	f := fakenet.New()
	mustApply(t, f, config([]byte{2, 3}, []byte{9}))
	mustApply(t, f, config([]byte{2, 3, 4}, []byte{9}))
	ops := f.LastOps()
	if len(ops) != 3 || ops[0].Kind != netcfg.OpPeer || ops[1].Kind != netcfg.OpRouteAdd || ops[2].Kind != netcfg.OpRouteAdd {
		t.Fatalf("want one peer and its two routes, got:\n%s", strings.Join(f.LastOpLines(), "\n"))
	}
	if got := f.TouchedPeers(); !slices.Equal(got, []key.PublicKey{pubKey(4)}) {
		t.Fatalf("touched peers %v, want only %v", got, pubKey(4))
	}
	golden(t, "join-ops", strings.Join(f.LastOpLines(), "\n")+"\n")
}

func TestLeavingBootureRemovesPeerAndRoutes(t *testing.T) {
	f := fakenet.New()
	mustApply(t, f, config([]byte{2, 3}, []byte{9}))
	mustApply(t, f, config([]byte{3}, []byte{9}))
	golden(t, "leave-ops", strings.Join(f.LastOpLines(), "\n")+"\n")
	if got := f.TouchedPeers(); !slices.Equal(got, []key.PublicKey{pubKey(2)}) {
		t.Fatalf("touched peers %v, want only %v", got, pubKey(2))
	}
}

func TestDriftIsRepaired(t *testing.T) {
	f := fakenet.New()
	cfg := config([]byte{2, 3}, []byte{9})
	mustApply(t, f, cfg)
	want := f.String()

	if !f.RemovePeer(pubKey(3)) || !f.DeleteRoute(netip.MustParsePrefix("10.77.2.0/24")) || !f.DeleteFirewall() ||
		!f.DeleteUnreachable(netip.MustParsePrefix("10.77.0.0/16")) {
		t.Fatal("drift helpers found nothing to remove")
	}
	f.AddRoute(netip.MustParsePrefix("192.0.2.0/24"))
	if !f.DeleteAddress(netip.MustParsePrefix("fd00:77:1:1::1/64")) {
		t.Fatal("address not found")
	}
	mustApply(t, f, cfg)
	golden(t, "drift-repair-ops", strings.Join(f.LastOpLines(), "\n")+"\n")
	if got := f.TouchedPeers(); !slices.Equal(got, []key.PublicKey{pubKey(3)}) {
		t.Fatalf("touched peers %v, want only the removed one", got)
	}
	if got := f.String(); got != want {
		t.Fatalf("state after repair differs:\n--- got\n%s--- want\n%s", got, want)
	}

	// A deleted interface comes back whole.
	f.DeleteLink()
	mustApply(t, f, cfg)
	if got := f.String(); got != want {
		t.Fatalf("state after link re-creation differs:\n--- got\n%s--- want\n%s", got, want)
	}
}

func TestLearntEndpointIsKept(t *testing.T) {
	f := fakenet.New()
	cfg := config([]byte{2}, []byte{9})
	mustApply(t, f, cfg)
	learnt := netip.MustParseAddrPort("203.0.113.7:40000")
	f.SetPeerEndpoint(pubKey(109), learnt)
	f.SetPeerStats(pubKey(109), time.Unix(1700000000, 0), 10, 20)
	assertConverged(t, f, cfg)
	st, err := f.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Peers {
		if p.PublicKey == pubKey(109) && (p.Endpoint != learnt || p.RxBytes != 10 || p.TxBytes != 20) {
			t.Fatalf("member state reset: %+v", p)
		}
	}
}

func TestAllowedIPMovesBetweenPeers(t *testing.T) {
	f := fakenet.New()
	cfg := config([]byte{2, 3}, nil)
	mustApply(t, f, cfg)
	// Site 10.77.3.0/24 changes hands from peer 3 to peer 2.
	cfg.Peers[0].AllowedIPs = append(cfg.Peers[0].AllowedIPs, netip.MustParsePrefix("10.77.3.0/24"))
	cfg.Peers[1].AllowedIPs = pfxs("fd00:77:1:3::/64")
	mustApply(t, f, cfg)
	assertConverged(t, f, cfg)
	// The reverse order of peers (3 sorted after 2) must also converge.
	cfg.Peers[0].AllowedIPs = cfg.Peers[0].AllowedIPs[:2]
	cfg.Peers[1].AllowedIPs = pfxs("10.77.3.0/24", "fd00:77:1:3::/64")
	mustApply(t, f, cfg)
	assertConverged(t, f, cfg)
}

func TestFailNextApply(t *testing.T) {
	f := fakenet.New()
	cfg := config([]byte{2, 3}, []byte{9})
	f.FailNextApply(nil)
	if err := f.Apply(context.Background(), cfg); !errors.Is(err, fakenet.ErrInjected) {
		t.Fatalf("Apply error %v, want ErrInjected", err)
	}
	if s := f.String(); s != "" {
		t.Fatalf("failed Apply changed state:\n%s", s)
	}
	if _, err := f.State(context.Background()); !errors.Is(err, netcfg.ErrNoInterface) {
		t.Fatalf("State before a successful Apply: %v", err)
	}

	// A failure in the middle leaves part done; the next Apply finishes the
	// rest without redoing it.
	boom := errors.New("boom")
	f.FailNextApplyAfter(4, boom)
	if err := f.Apply(context.Background(), cfg); !errors.Is(err, boom) {
		t.Fatalf("Apply error %v, want boom", err)
	}
	partial := len(f.LastOps())
	mustApply(t, f, cfg)
	ref := fakenet.New()
	mustApply(t, ref, cfg)
	if partial != 4 || len(f.LastOps())+partial != len(ref.LastOps()) {
		t.Fatalf("partial %d + rest %d ops, want %d in all", partial, len(f.LastOps()), len(ref.LastOps()))
	}
	if f.String() != ref.String() {
		t.Fatalf("resumed state differs:\n%s\nvs\n%s", f, ref)
	}
}

func TestCloseRestoresAndRemoves(t *testing.T) {
	f := fakenet.New()
	cfg := config([]byte{2}, []byte{9})
	cfg.Firewall.FullTunnel = []netip.Addr{netip.MustParseAddr("10.77.1.9")}
	mustApply(t, f, cfg)
	if v, _ := f.Sysctl("net/ipv4/conf/eth0/forwarding"); v != "1" {
		t.Fatalf("uplink forwarding %q, want 1 for full tunnel", v)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if s := f.String(); s != "" {
		t.Fatalf("state after Close:\n%s", s)
	}
	for _, k := range []string{"net/ipv4/conf/eth0/forwarding", "net/ipv6/conf/all/forwarding"} {
		if v, _ := f.Sysctl(k); v != "0" {
			t.Errorf("%s = %q after Close, want 0", k, v)
		}
	}
	if err := f.Apply(context.Background(), cfg); !errors.Is(err, netcfg.ErrClosed) {
		t.Fatalf("Apply after Close: %v", err)
	}
	if _, err := f.State(context.Background()); !errors.Is(err, netcfg.ErrClosed) {
		t.Fatalf("State after Close: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestIPv6ForwardingFallback(t *testing.T) {
	f := fakenet.New()
	f.SetForceForwarding(false)
	cfg := config([]byte{2}, nil)
	mustApply(t, f, cfg)
	golden(t, "ipv6-fallback-state", f.String())
	if v, _ := f.Sysctl("net/ipv6/conf/eth0/accept_ra"); v != "2" {
		t.Fatalf("uplink accept_ra %q, want 2 before global forwarding", v)
	}
	// Without peers nothing needs forwarding: everything is put back.
	cfg.Peers, cfg.Routes = nil, nil
	mustApply(t, f, cfg)
	for k, want := range map[string]string{"net/ipv6/conf/all/forwarding": "0", "net/ipv6/conf/eth0/accept_ra": "1", "net/ipv4/conf/booture0/forwarding": "0"} {
		if v, _ := f.Sysctl(k); v != want {
			t.Errorf("%s = %q, want %q", k, v, want)
		}
	}
	assertConverged(t, f, cfg)
}

func TestHostForwardingLeftAlone(t *testing.T) {
	f := fakenet.New()
	f.SetSysctl("net/ipv6/conf/all/forwarding", "1")
	f.SetSysctl("net/ipv4/conf/booture0/forwarding", "1")
	mustApply(t, f, config([]byte{2}, nil))
	for _, op := range f.LastOps() {
		if op.Kind == netcfg.OpSysctl {
			t.Errorf("changed %s though the host already forwards", op.Sysctl)
		}
	}
	f.Close()
	if v, _ := f.Sysctl("net/ipv6/conf/all/forwarding"); v != "1" {
		t.Errorf("Close changed the host's own forwarding setting")
	}
}

func TestNoPrivateKeyPrinted(t *testing.T) {
	f := fakenet.New()
	cfg := config([]byte{2}, []byte{9})
	mustApply(t, f, cfg)
	out := f.String() + strings.Join(f.LastOpLines(), "\n") + fmt.Sprintf("%v %+v", f.LastOps(), f.LastOps())
	if strings.Contains(out, cfg.PrivateKey.RevealBase64()) {
		t.Fatal("private key printed")
	}
}

func TestInterfaceCannotChange(t *testing.T) {
	f := fakenet.New()
	mustApply(t, f, config(nil, nil))
	cfg := config(nil, nil)
	cfg.Interface = "other0"
	if err := f.Apply(context.Background(), cfg); !errors.Is(err, netcfg.ErrInvalidConfig) {
		t.Fatalf("Apply with another interface: %v", err)
	}
	if err := f.Apply(context.Background(), netcfg.Config{Interface: "booture0"}); !errors.Is(err, netcfg.ErrInvalidConfig) {
		t.Fatalf("Apply without key: %v", err)
	}
}

func TestCanceledContext(t *testing.T) {
	f := fakenet.New()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.Apply(ctx, config([]byte{2}, nil)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply with canceled context: %v", err)
	}
}

// TestRandomConfigsConverge applies random successive configs and checks
// that each Apply reaches the config (State matches it) and that a second
// Apply changes nothing.
func TestRandomConfigsConverge(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	f := fakenet.New()
	for i := range 300 {
		cfg := randomConfig(r)
		if err := cfg.Validate(); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		// Random drift between rounds.
		if st, err := f.State(context.Background()); err == nil && len(st.Peers) > 0 && r.IntN(3) == 0 {
			f.RemovePeer(st.Peers[r.IntN(len(st.Peers))].PublicKey)
		}
		if r.IntN(5) == 0 {
			f.DeleteFirewall()
		}
		if r.IntN(5) == 0 {
			f.DeleteUnreachable(netip.MustParsePrefix("fd00:77:1::/48"))
		}
		mustApply(t, f, cfg)
		checkMatches(t, f, cfg)
		assertConverged(t, f, cfg)
	}
}

func randomConfig(r *rand.Rand) netcfg.Config {
	var bootures, members []byte
	for n := byte(2); n < 12; n++ {
		if r.IntN(2) == 0 {
			bootures = append(bootures, n)
		}
		if r.IntN(2) == 0 {
			members = append(members, n)
		}
	}
	cfg := config(bootures, members)
	for i := range cfg.Peers {
		if r.IntN(4) == 0 {
			cfg.Peers[i].PersistentKeepalive = time.Duration(r.IntN(60)) * time.Second
		}
		if r.IntN(4) == 0 && cfg.Peers[i].Endpoint.IsValid() {
			cfg.Peers[i].Endpoint = netip.AddrPortFrom(cfg.Peers[i].Endpoint.Addr(), uint16(51820+r.IntN(3)))
		}
	}
	if r.IntN(3) == 0 {
		cfg.Firewall.AllowMemberToMember = true
	}
	for _, m := range members {
		if r.IntN(3) == 0 {
			cfg.Firewall.FullTunnel = append(cfg.Firewall.FullTunnel, netip.MustParseAddr(fmt.Sprintf("10.77.1.%d", m)))
		}
	}
	if r.IntN(6) == 0 {
		cfg.Firewall = netcfg.Firewall{}
	}
	if r.IntN(6) == 0 {
		cfg.Unreachable = cfg.Unreachable[:r.IntN(2)]
	}
	if r.IntN(4) == 0 {
		cfg.MTU = 1280 + r.IntN(100)
	}
	cfg.ListenPort = 51820 + r.IntN(2)
	return cfg
}

func checkMatches(t *testing.T, f *fakenet.Fake, cfg netcfg.Config) {
	t.Helper()
	st, err := f.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Peers) != len(cfg.Peers) || st.ListenPort != cfg.ListenPort || st.PublicKey != cfg.PrivateKey.Public() {
		t.Fatalf("state %+v does not match config %v", st, cfg)
	}
	want := map[key.PublicKey]netcfg.Peer{}
	for _, p := range cfg.Peers {
		want[p.PublicKey] = p
	}
	for _, p := range st.Peers {
		w, ok := want[p.PublicKey]
		if !ok {
			t.Fatalf("unexpected peer %s", p.PublicKey)
		}
		if w.Endpoint.IsValid() && p.Endpoint != w.Endpoint || p.PersistentKeepalive != w.PersistentKeepalive || len(p.AllowedIPs) != len(w.AllowedIPs) {
			t.Fatalf("peer %s: %+v, want %+v", p.PublicKey, p, w)
		}
	}
}
