package mesh

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/booture/booture/key"
	"github.com/booture/booture/netcfg"
)

// planKey returns a public key whose base64 form starts with a letter that
// grows with b (b from 0x10 to 0x60): the tests choose which side of a pair
// has the lower key, hence which one initiates.
func planKey(b byte) key.PublicKey {
	var k [key.Len]byte
	k[0] = b
	return key.PublicKeyFromRaw32(k)
}

var (
	planMeshID = MeshID{0x42}
	planULA    = planMeshID.ULA()
	planNow    = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

	// This booture: site 3, key 0x30. Peers with a key below it respond,
	// peers above it are initiated to.
	planSelf = Record{Name: "self", PublicKey: planKey(0x30), Site: 3}
	planPriv = key.PrivateKeyFromRaw32([key.Len]byte{0x01})

	lowKey, highKey, higherKey = planKey(0x10), planKey(0x50), planKey(0x60)
	site5, site6, site7        = SiteOf(planULA, 5), SiteOf(planULA, 6), SiteOf(planULA, 7)
	endpoint5                  = netip.MustParseAddrPort("198.51.100.5:51820")
	endpoint7v6                = netip.MustParseAddrPort("[2001:db8::7]:51820")
)

// planPeer is a booture on site, up (or not) since upFor before planNow.
func planPeer(name string, pub key.PublicKey, site int, ep netip.AddrPort, state PeerState, upFor time.Duration) Peer {
	p := Peer{Record: Record{Name: name, PublicKey: pub, Site: site, Endpoint: ep}, State: state}
	if state.Up() {
		p.UpSince = planNow.Add(-upFor)
	}
	return p
}

func planInput(peers []Peer, members []MemberPeer) PlanInput {
	return PlanInput{
		View: View{
			Self: planSelf, MeshID: planMeshID, ULA: planULA,
			Site: SiteOf(planULA, planSelf.Site), Peers: peers,
		},
		PrivateKey: planPriv,
		Interface:  "bt0",
		ListenPort: 51820,
		MTU:        1380,
		Members:    members,
		Now:        planNow,
	}
}

// ago turns durations before planNow into times (nil stays nil).
func ago(m map[key.PublicKey]time.Duration) map[key.PublicKey]time.Time {
	if m == nil {
		return nil
	}
	out := make(map[key.PublicKey]time.Time, len(m))
	for k, d := range m {
		out[k] = planNow.Add(-d)
	}
	return out
}

func planHost(s Site, h int) (netip.Prefix, netip.Prefix) {
	v4, v6 := s.Host(h)
	return netip.PrefixFrom(v4, 32), netip.PrefixFrom(v6, 128)
}

// TestPlan is the plan's table: for each roster and member list, the
// WireGuard peers, routes and full-tunnel addresses this booture wants, and
// when the plan changes by the passing of time alone (PlanRecheck).
func TestPlan(t *testing.T) {
	m3v4, m3v6 := planHost(SiteOf(planULA, 3), 10)
	m3b4, m3b6 := planHost(SiteOf(planULA, 3), 11)
	old := 10 * time.Minute
	reach := netip.MustParseAddrPort("203.0.113.9:40000")

	tests := []struct {
		name     string
		peers    []Peer
		members  []MemberPeer
		expelled bool
		// heard: peers WireGuard has heard from; resets: how long before
		// planNow this booture last re-created each peer.
		heard  map[key.PublicKey]bool
		resets map[key.PublicKey]time.Duration

		wantPeers      []netcfg.Peer
		wantRoutes     []netip.Prefix
		wantFullTunnel []netip.Addr
		wantRecheck    time.Duration
	}{
		{
			name: "a booture alone: its addresses and filter, no peer, no route",
		},
		{
			name:  "alive peer, this booture initiates, settled: endpoint and keepalive",
			peers: []Peer{planPeer("b", highKey, 5, endpoint5, StateAlive, old)},
			wantPeers: []netcfg.Peer{{
				PublicKey: highKey, Endpoint: endpoint5,
				AllowedIPs: []netip.Prefix{site5.IPv4, site5.IPv6}, PersistentKeepalive: PeerKeepalive,
			}},
			wantRoutes: []netip.Prefix{site5.IPv4, site5.IPv6},
		},
		{
			name:  "new peer, this booture initiates: endpoint and keepalive at once, watched until it answers",
			peers: []Peer{planPeer("b", highKey, 5, endpoint5, StateAlive, 30*time.Millisecond)},
			wantPeers: []netcfg.Peer{{
				PublicKey: highKey, Endpoint: endpoint5,
				AllowedIPs: []netip.Prefix{site5.IPv4, site5.IPv6}, PersistentKeepalive: PeerKeepalive,
			}},
			wantRoutes:  []netip.Prefix{site5.IPv4, site5.IPv6},
			wantRecheck: resetAfter[0] - 30*time.Millisecond,
		},
		{
			name:  "new peer, this booture responds: neither endpoint nor keepalive until responderDelay (no crossing handshakes)",
			peers: []Peer{planPeer("a", lowKey, 5, endpoint5, StateAlive, 2*time.Second)},
			wantPeers: []netcfg.Peer{{
				PublicKey: lowKey, AllowedIPs: []netip.Prefix{site5.IPv4, site5.IPv6},
			}},
			wantRoutes:  []netip.Prefix{site5.IPv4, site5.IPv6},
			wantRecheck: responderDelay - 2*time.Second,
		},
		{
			name:  "responder after responderDelay: endpoint and keepalive, reaches the initiator by itself",
			peers: []Peer{planPeer("a", lowKey, 5, endpoint5, StateAlive, responderDelay)},
			wantPeers: []netcfg.Peer{{
				PublicKey: lowKey, Endpoint: endpoint5,
				AllowedIPs: []netip.Prefix{site5.IPv4, site5.IPv6}, PersistentKeepalive: PeerKeepalive,
			}},
			wantRoutes: []netip.Prefix{site5.IPv4, site5.IPv6},
		},
		{
			name:  "initiator, nothing heard at the first reset time: the peer is re-created (a new initiation)",
			peers: []Peer{planPeer("b", highKey, 5, endpoint5, StateAlive, 150*time.Millisecond)},
			wantPeers: []netcfg.Peer{{
				PublicKey: highKey, Endpoint: endpoint5,
				AllowedIPs: []netip.Prefix{site5.IPv4, site5.IPv6}, PersistentKeepalive: PeerKeepalive, Reset: true,
			}},
			wantRoutes:  []netip.Prefix{site5.IPv4, site5.IPv6},
			wantRecheck: resetAfter[1] - 150*time.Millisecond,
		},
		{
			name:   "initiator, re-created since the reset time: not again until the next one",
			peers:  []Peer{planPeer("b", highKey, 5, endpoint5, StateAlive, 150*time.Millisecond)},
			resets: map[key.PublicKey]time.Duration{highKey: 10 * time.Millisecond},
			wantPeers: []netcfg.Peer{{
				PublicKey: highKey, Endpoint: endpoint5,
				AllowedIPs: []netip.Prefix{site5.IPv4, site5.IPv6}, PersistentKeepalive: PeerKeepalive,
			}},
			wantRoutes:  []netip.Prefix{site5.IPv4, site5.IPv6},
			wantRecheck: resetAfter[1] - 150*time.Millisecond,
		},
		{
			name:   "initiator, re-created before the peer last came up: re-created again",
			peers:  []Peer{planPeer("b", highKey, 5, endpoint5, StateAlive, 150*time.Millisecond)},
			resets: map[key.PublicKey]time.Duration{highKey: time.Minute},
			wantPeers: []netcfg.Peer{{
				PublicKey: highKey, Endpoint: endpoint5,
				AllowedIPs: []netip.Prefix{site5.IPv4, site5.IPv6}, PersistentKeepalive: PeerKeepalive, Reset: true,
			}},
			wantRoutes:  []netip.Prefix{site5.IPv4, site5.IPv6},
			wantRecheck: resetAfter[1] - 150*time.Millisecond,
		},
		{
			name:  "initiator, the responder answered (maybe mid-handshake): never re-created, no recheck",
			peers: []Peer{planPeer("b", highKey, 5, endpoint5, StateAlive, 150*time.Millisecond)},
			heard: map[key.PublicKey]bool{highKey: true},
			wantPeers: []netcfg.Peer{{
				PublicKey: highKey, Endpoint: endpoint5,
				AllowedIPs: []netip.Prefix{site5.IPv4, site5.IPv6}, PersistentKeepalive: PeerKeepalive,
			}},
			wantRoutes: []netip.Prefix{site5.IPv4, site5.IPv6},
		},
		{
			name:   "initiator, past the last reset time (done): WireGuard's own attempts go on",
			peers:  []Peer{planPeer("b", highKey, 5, endpoint5, StateAlive, resetAfter[len(resetAfter)-1]+100*time.Millisecond)},
			resets: map[key.PublicKey]time.Duration{highKey: 50 * time.Millisecond},
			wantPeers: []netcfg.Peer{{
				PublicKey: highKey, Endpoint: endpoint5,
				AllowedIPs: []netip.Prefix{site5.IPv4, site5.IPv6}, PersistentKeepalive: PeerKeepalive,
			}},
			wantRoutes: []netip.Prefix{site5.IPv4, site5.IPv6},
		},
		{
			name:  "initiator, up long ago and never heard from (unreachable): not re-created",
			peers: []Peer{planPeer("b", highKey, 5, endpoint5, StateAlive, old)},
			wantPeers: []netcfg.Peer{{
				PublicKey: highKey, Endpoint: endpoint5,
				AllowedIPs: []netip.Prefix{site5.IPv4, site5.IPv6}, PersistentKeepalive: PeerKeepalive,
			}},
			wantRoutes: []netip.Prefix{site5.IPv4, site5.IPv6},
		},
		{
			name: "up since unknown: counted as settled, no recheck",
			peers: []Peer{{
				Record: Record{Name: "a", PublicKey: lowKey, Site: 5, Endpoint: endpoint5}, State: StateAlive,
			}},
			wantPeers: []netcfg.Peer{{
				PublicKey: lowKey, Endpoint: endpoint5,
				AllowedIPs: []netip.Prefix{site5.IPv4, site5.IPv6}, PersistentKeepalive: PeerKeepalive,
			}},
			wantRoutes: []netip.Prefix{site5.IPv4, site5.IPv6},
		},
		{
			name:  "suspect peer is still routed",
			peers: []Peer{planPeer("b", highKey, 5, endpoint5, StateSuspect, old)},
			wantPeers: []netcfg.Peer{{
				PublicKey: highKey, Endpoint: endpoint5,
				AllowedIPs: []netip.Prefix{site5.IPv4, site5.IPv6}, PersistentKeepalive: PeerKeepalive,
			}},
			wantRoutes: []netip.Prefix{site5.IPv4, site5.IPv6},
		},
		{
			name: "dead and left peers are neither peers nor routes, nor rechecked",
			peers: []Peer{
				planPeer("b", highKey, 5, endpoint5, StateDead, 0),
				planPeer("c", higherKey, 7, endpoint7v6, StateLeft, 0),
			},
		},
		{
			name: "peer that lost its site contest is not routed",
			peers: []Peer{func() Peer {
				p := planPeer("b", highKey, 5, endpoint5, StateAlive, old)
				p.SiteLost = true
				return p
			}()},
		},
		{
			name:  "peer on this booture's own site is not routed (this booture holds it)",
			peers: []Peer{planPeer("b", highKey, planSelf.Site, endpoint5, StateAlive, old)},
		},
		{
			name:     "expelled: no booture peer, members still served",
			peers:    []Peer{planPeer("b", highKey, 5, endpoint5, StateAlive, old)},
			members:  []MemberPeer{{PublicKey: planKey(0x20), IPv4: m3v4.Addr(), IPv6: m3v6.Addr()}},
			expelled: true,
			wantPeers: []netcfg.Peer{{
				PublicKey: planKey(0x20), AllowedIPs: []netip.Prefix{m3v4, m3v6},
			}},
		},
		{
			name: "IPv6 endpoint, two sites: peers sorted by key, routes by prefix",
			peers: []Peer{
				planPeer("c", higherKey, 7, endpoint7v6, StateAlive, old),
				planPeer("b", highKey, 5, endpoint5, StateAlive, old),
			},
			wantPeers: []netcfg.Peer{
				{
					PublicKey: highKey, Endpoint: endpoint5,
					AllowedIPs: []netip.Prefix{site5.IPv4, site5.IPv6}, PersistentKeepalive: PeerKeepalive,
				},
				{
					PublicKey: higherKey, Endpoint: endpoint7v6,
					AllowedIPs: []netip.Prefix{site7.IPv4, site7.IPv6}, PersistentKeepalive: PeerKeepalive,
				},
			},
			wantRoutes: []netip.Prefix{site5.IPv4, site7.IPv4, site5.IPv6, site7.IPv6},
		},
		{
			name: "recheck is the soonest of a responder's delay and the watched peers' next reset",
			peers: []Peer{
				planPeer("a", lowKey, 5, endpoint5, StateAlive, 4*time.Second),             // responder: 1 s left
				planPeer("b", highKey, 6, endpoint5, StateAlive, 180*time.Millisecond),     // next reset in 20 ms, but it answered
				planPeer("c", higherKey, 7, endpoint7v6, StateAlive, 150*time.Millisecond), // next reset in 50 ms
			},
			heard:  map[key.PublicKey]bool{highKey: true},
			resets: map[key.PublicKey]time.Duration{higherKey: 40 * time.Millisecond},
			wantPeers: []netcfg.Peer{
				{PublicKey: lowKey, AllowedIPs: []netip.Prefix{site5.IPv4, site5.IPv6}},
				{PublicKey: highKey, Endpoint: endpoint5, AllowedIPs: []netip.Prefix{site6.IPv4, site6.IPv6}, PersistentKeepalive: PeerKeepalive},
				{PublicKey: higherKey, Endpoint: endpoint7v6, AllowedIPs: []netip.Prefix{site7.IPv4, site7.IPv6}, PersistentKeepalive: PeerKeepalive},
			},
			wantRoutes:  []netip.Prefix{site5.IPv4, site6.IPv4, site7.IPv4, site5.IPv6, site6.IPv6, site7.IPv6},
			wantRecheck: resetAfter[1] - 150*time.Millisecond,
		},
		{
			name:     "expelled: no reset, no recheck",
			peers:    []Peer{planPeer("b", highKey, 5, endpoint5, StateAlive, 100*time.Millisecond)},
			expelled: true,
		},
		{
			name: "split-tunnel member: its two host addresses, no endpoint, no full tunnel",
			members: []MemberPeer{
				{PublicKey: planKey(0x20), IPv4: m3v4.Addr(), IPv6: m3v6.Addr()},
			},
			wantPeers: []netcfg.Peer{{PublicKey: planKey(0x20), AllowedIPs: []netip.Prefix{m3v4, m3v6}}},
		},
		{
			name: "full-tunnel member: its addresses are masqueraded",
			members: []MemberPeer{
				{PublicKey: planKey(0x20), IPv4: m3v4.Addr(), IPv6: m3v6.Addr(), FullTunnel: true},
			},
			wantPeers:      []netcfg.Peer{{PublicKey: planKey(0x20), AllowedIPs: []netip.Prefix{m3v4, m3v6}}},
			wantFullTunnel: []netip.Addr{m3v4.Addr(), m3v6.Addr()},
		},
		{
			name: "IPv4-only and IPv6-only members get only the address they have",
			members: []MemberPeer{
				{PublicKey: planKey(0x20), IPv4: m3v4.Addr(), FullTunnel: true},
				{PublicKey: planKey(0x40), IPv6: m3b6.Addr(), FullTunnel: true},
			},
			wantPeers: []netcfg.Peer{
				{PublicKey: planKey(0x20), AllowedIPs: []netip.Prefix{m3v4}},
				{PublicKey: planKey(0x40), AllowedIPs: []netip.Prefix{m3b6}},
			},
			wantFullTunnel: []netip.Addr{m3v4.Addr(), m3b6.Addr()},
		},
		{
			name: "member last seen somewhere: the booture reaches it there with a keepalive",
			members: []MemberPeer{
				{PublicKey: planKey(0x20), IPv4: m3b4.Addr(), IPv6: m3b6.Addr(), Reach: reach},
			},
			wantPeers: []netcfg.Peer{{
				PublicKey: planKey(0x20), Endpoint: reach,
				AllowedIPs: []netip.Prefix{m3b4, m3b6}, PersistentKeepalive: PeerKeepalive,
			}},
		},
		{
			name:  "bootures and members together, sorted by key",
			peers: []Peer{planPeer("b", highKey, 5, endpoint5, StateAlive, old), planPeer("a", lowKey, 7, endpoint7v6, StateAlive, old)},
			members: []MemberPeer{
				{PublicKey: planKey(0x58), IPv4: m3v4.Addr(), IPv6: m3v6.Addr(), FullTunnel: true},
				{PublicKey: planKey(0x20), IPv4: m3b4.Addr(), IPv6: m3b6.Addr()},
			},
			wantPeers: []netcfg.Peer{
				{
					PublicKey: lowKey, Endpoint: endpoint7v6,
					AllowedIPs: []netip.Prefix{site7.IPv4, site7.IPv6}, PersistentKeepalive: PeerKeepalive,
				},
				{PublicKey: planKey(0x20), AllowedIPs: []netip.Prefix{m3b4, m3b6}},
				{
					PublicKey: highKey, Endpoint: endpoint5,
					AllowedIPs: []netip.Prefix{site5.IPv4, site5.IPv6}, PersistentKeepalive: PeerKeepalive,
				},
				{PublicKey: planKey(0x58), AllowedIPs: []netip.Prefix{m3v4, m3v6}},
			},
			wantRoutes:     []netip.Prefix{site5.IPv4, site7.IPv4, site5.IPv6, site7.IPv6},
			wantFullTunnel: []netip.Addr{m3v4.Addr(), m3v6.Addr()},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := planInput(tt.peers, tt.members)
			in.View.Expelled = tt.expelled
			in.Heard, in.Resets = tt.heard, ago(tt.resets)
			got := Plan(in)
			if !reflect.DeepEqual(got.Peers, tt.wantPeers) {
				t.Errorf("peers:\n%s\nwant:\n%s", formatPeers(got.Peers), formatPeers(tt.wantPeers))
			}
			if !reflect.DeepEqual(got.Routes, tt.wantRoutes) {
				t.Errorf("routes = %v, want %v", got.Routes, tt.wantRoutes)
			}
			if !reflect.DeepEqual(got.Firewall.FullTunnel, tt.wantFullTunnel) {
				t.Errorf("full tunnel = %v, want %v", got.Firewall.FullTunnel, tt.wantFullTunnel)
			}
			if r := PlanRecheck(in); r != tt.wantRecheck {
				t.Errorf("recheck = %v, want %v", r, tt.wantRecheck)
			}
			// Plan is pure: the same input gives the same Config.
			if again := Plan(in); !reflect.DeepEqual(again, got) {
				t.Errorf("a second Plan of the same input differs:\n%s\nthen:\n%s", formatPeers(got.Peers), formatPeers(again.Peers))
			}
		})
	}
}

// TestPlanInterface checks the parts of the plan that do not depend on the
// roster: the interface, its addresses (host 1 of the site, with the site's
// prefix length, so that the kernel routes the site to the interface), the
// unreachable routes of the pools and the packet filter's settings.
func TestPlanInterface(t *testing.T) {
	in := planInput(nil, nil)
	in.AllowMemberToMember = true
	in.Uplink = "eth1"
	in.TCPPorts, in.UDPPorts = []uint16{80, 53}, []uint16{53}
	got := Plan(in)
	self := SiteOf(planULA, planSelf.Site)
	v4, v6 := self.Booture()
	want := netcfg.Config{
		Interface:   "bt0",
		PrivateKey:  planPriv,
		ListenPort:  51820,
		MTU:         1380,
		Addresses:   []netip.Prefix{netip.PrefixFrom(v4, 24), netip.PrefixFrom(v6, 64)},
		Unreachable: []netip.Prefix{PoolIPv4, planULA},
		Firewall: netcfg.Firewall{
			Enabled:             true,
			MeshIPv4:            PoolIPv4,
			MeshIPv6:            planULA,
			AllowMemberToMember: true,
			Uplink:              "eth1",
			TCPPorts:            []uint16{80, 53},
			UDPPorts:            []uint16{53},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Plan =\n%+v\nwant\n%+v", got, want)
	}
	if got.Addresses[0].String() != "10.77.3.1/24" {
		t.Errorf("IPv4 address %v, want 10.77.3.1/24", got.Addresses[0])
	}
}

// TestPlanRecheckIsWhenPlanChanges checks PlanRecheck's promise to the
// reconciler: once the resets a plan asks for are applied (recorded in
// Resets, as the daemon does), the plan stays the same until the recheck
// delay has passed, and differs once it has; with no recheck, it stays the
// same for good.
func TestPlanRecheckIsWhenPlanChanges(t *testing.T) {
	for _, upFor := range []time.Duration{0, 10 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond, 300 * time.Millisecond, 999 * time.Millisecond, 3 * time.Second, 3500 * time.Millisecond, 5 * time.Second, time.Hour} {
		for _, k := range []key.PublicKey{lowKey, highKey} {
			in := planInput([]Peer{planPeer("p", k, 5, endpoint5, StateAlive, upFor)}, nil)
			in.Resets = map[key.PublicKey]time.Time{}
			name := fmt.Sprintf("up %v, initiator %v", upFor, initiates(planSelf.PublicKey, k))
			settle := func() netcfg.Config {
				cfg := Plan(in)
				for _, p := range cfg.Peers {
					if p.Reset {
						in.Resets[p.PublicKey] = in.Now
					}
				}
				return Plan(in)
			}
			before := settle()
			recheck := PlanRecheck(in)
			if recheck == 0 {
				in.Now = in.Now.Add(24 * time.Hour)
				if after := Plan(in); !reflect.DeepEqual(after, before) {
					t.Errorf("%s: no recheck, yet the plan changes a day later:\n%s\nthen:\n%s", name, formatPeers(before.Peers), formatPeers(after.Peers))
				}
				continue
			}
			at := in.Now
			in.Now = at.Add(recheck - time.Nanosecond)
			if just := Plan(in); !reflect.DeepEqual(just, before) {
				t.Errorf("%s: the plan changes before the recheck (%v)", name, recheck)
			}
			in.Now = at.Add(recheck)
			if after := Plan(in); reflect.DeepEqual(after, before) {
				t.Errorf("%s: the plan is the same at the recheck (%v): a wasted plan", name, recheck)
			}
		}
	}
}

// TestNeedsHeard: the daemon reads the interface only while some new peer
// is watched for a lost initiation.
func TestNeedsHeard(t *testing.T) {
	for _, tt := range []struct {
		name  string
		peers []Peer
		want  bool
	}{
		{"no peer", nil, false},
		{"new peer this booture initiates to", []Peer{planPeer("b", highKey, 5, endpoint5, StateAlive, 10*time.Millisecond)}, true},
		{"new peer that initiates to this booture", []Peer{planPeer("a", lowKey, 5, endpoint5, StateAlive, 10*time.Millisecond)}, false},
		{"peer up long ago", []Peer{planPeer("b", highKey, 5, endpoint5, StateAlive, time.Hour)}, false},
		{"dead peer", []Peer{planPeer("b", highKey, 5, endpoint5, StateDead, 0)}, false},
		{"new peer that lost its site contest (not configured)", []Peer{func() Peer {
			p := planPeer("b", highKey, 5, endpoint5, StateAlive, 10*time.Millisecond)
			p.SiteLost = true
			return p
		}()}, false},
	} {
		if got := NeedsHeard(planInput(tt.peers, nil)); got != tt.want {
			t.Errorf("%s: NeedsHeard = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// formatPeers prints one peer a line, as `wg` would show them.
func formatPeers(ps []netcfg.Peer) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "  peer %s endpoint %v allowed %v keepalive %v reset %v\n", p.PublicKey, p.Endpoint, p.AllowedIPs, p.PersistentKeepalive, p.Reset)
	}
	if b.Len() == 0 {
		return "  (none)"
	}
	return b.String()
}
