package mesh

import (
	"net/netip"
	"sort"
	"time"

	"github.com/booture/booture/key"
	"github.com/booture/booture/netcfg"
)

// PeerKeepalive keeps NAT mappings between bootures open.
const PeerKeepalive = 25 * time.Second

// A new pair of bootures (both add each other as WireGuard peers when
// gossip shows the other up, within milliseconds of each other or up to a
// second apart on a loaded machine) must pass traffic at once, from either
// side. Two WireGuard facts shape how:
//   - handshakes that cross (each side sends an initiation before it gets
//     the other's) both fail, and WireGuard tries again only 5 s later (plus
//     up to 1/3 s of jitter), where they may cross again: in the namespace
//     lab, 10 bootures joining at once, with both sides of every new pair
//     holding the endpoint and sending at once, had one to three pairs in
//     45 waiting 5, 10 or 15 s;
//   - an initiation that reaches a booture that does not know the sender
//     yet is dropped, and the sender may send the next one only 5 s later.
//
// So a new pair has roles for its first seconds. The booture with the
// lower public key initiates: it has the other's endpoint and a keepalive
// at once (turning it on sends a packet, hence an initiation). The other
// has neither until responderDelay, so it cannot initiate and no handshakes
// cross; WireGuard holds its outgoing packets (in userspace; the kernel
// drops them) until the initiator's handshake completes, and learns the
// initiator's endpoint from it. If the responder did not know the
// initiator yet, the initiator's initiation was lost: while it has heard
// nothing from the responder, the initiator removes the peer and adds it
// again at each of resetAfter past the peer coming up, which starts a new
// initiation at once (re-creating the peer resets WireGuard's 5 s wait).
// Only while nothing was heard: re-creating a peer that is in the middle
// of a handshake would throw away keys the other side may go on to use
// (the lab showed a direction dead for 15 s when a booture did). After
// responderDelay, the responder gets the endpoint and keepalive too, to
// reach an initiator that cannot reach it (NAT).
//
// Until then, the initiator's keepalive waited a second (to let the other
// side add it) and nothing retried: traffic from the responder waited that
// second, and an initiation lost all the same cost 5 s.
const responderDelay = 5 * time.Second

// resetAfter are the times, counted from when a booture peer came up, at
// which the initiator re-creates the peer if it has heard nothing from it:
// every 100 ms at first (a round trip takes a millisecond on a LAN), then
// further apart, so that a machine too loaded to answer in time is not
// kept from answering by ever newer initiations, and a booture that cannot
// be reached (gone, or behind a NAT) costs a few attempts only. After the
// last one, WireGuard's own attempts every 5 s go on.
var resetAfter = []time.Duration{
	100 * time.Millisecond, 200 * time.Millisecond, 350 * time.Millisecond, 550 * time.Millisecond,
	850 * time.Millisecond, 1250 * time.Millisecond, 1750 * time.Millisecond, 2350 * time.Millisecond, 3050 * time.Millisecond,
}

// MemberPeer is an enabled VPN member of this booture, as the plan needs it.
type MemberPeer struct {
	PublicKey  key.PublicKey
	IPv4, IPv6 netip.Addr
	FullTunnel bool
	// Reach, when set, is where the member was last seen: the booture
	// starts a handshake there itself (a keepalive) instead of waiting for
	// the member to retry, after the booture restarted or the member was
	// enabled again. It is set for a short while only: WireGuard follows a
	// roaming member by itself, and a stale endpoint must not undo that.
	Reach netip.AddrPort
}

// PlanInput is everything the desired network state depends on.
type PlanInput struct {
	View       View
	PrivateKey key.PrivateKey
	Interface  string
	ListenPort int
	MTU        int
	// Members are this booture's enabled VPN members.
	Members []MemberPeer
	// AllowMemberToMember lets members reach each other.
	AllowMemberToMember bool
	// Uplink is the interface full-tunnel traffic leaves by ("" = default
	// route's).
	Uplink string
	// TCPPorts and UDPPorts are the ports the booture serves on its mesh
	// addresses (the gateway's HTTP and DNS): the filter lets members and
	// other bootures reach those, and no other socket of the host.
	TCPPorts, UDPPorts []uint16
	// Now is the time the plan is made for (handshake roles and retries).
	Now time.Time
	// Heard tells, for each booture peer, whether WireGuard has received
	// anything from it (a handshake message or data) since the peer was
	// added, as the interface reports it (missing: nothing). Plan reads it
	// only for the new peers it watches (see NeedsHeard).
	Heard map[key.PublicKey]bool
	// Resets is when this booture last re-created each booture peer
	// (netcfg.Peer.Reset, applied).
	Resets map[key.PublicKey]time.Time
}

// Plan computes the desired WireGuard interface: one peer per booture that
// is up (alive or suspect) with its site as allowed IPs and routes, one peer
// per enabled member with its own addresses, the packet filter, and
// unreachable routes for the whole pools (traffic for a site without a
// route never leaves by the default route). It is a pure function: same
// input, same Config.
func Plan(in PlanInput) netcfg.Config {
	v := in.View
	v4, v6 := v.Site.Booture()
	cfg := netcfg.Config{
		Interface:  in.Interface,
		PrivateKey: in.PrivateKey,
		ListenPort: in.ListenPort,
		MTU:        in.MTU,
		Addresses: []netip.Prefix{
			netip.PrefixFrom(v4, v.Site.IPv4.Bits()),
			netip.PrefixFrom(v6, v.Site.IPv6.Bits()),
		},
		Unreachable: []netip.Prefix{PoolIPv4, v.ULA},
		Firewall: netcfg.Firewall{
			Enabled:             true,
			MeshIPv4:            PoolIPv4,
			MeshIPv6:            v.ULA,
			AllowMemberToMember: in.AllowMemberToMember,
			Uplink:              in.Uplink,
			TCPPorts:            in.TCPPorts,
			UDPPorts:            in.UDPPorts,
		},
	}
	taken := takenKeys(in)
	if !v.Expelled {
		for _, p := range v.Peers {
			if !planned(in, p, taken) {
				continue // down, or see PlanSkips
			}
			s := SiteOf(v.ULA, p.Site)
			peer := netcfg.Peer{
				PublicKey:           p.PublicKey,
				Endpoint:            p.Endpoint,
				AllowedIPs:          []netip.Prefix{s.IPv4, s.IPv6},
				PersistentKeepalive: PeerKeepalive,
			}
			switch {
			case initiates(v.Self.PublicKey, p.PublicKey):
				_, peer.Reset = resetSlot(in, p)
			case !p.UpSince.IsZero() && in.Now.Sub(p.UpSince) < responderDelay:
				peer.Endpoint, peer.PersistentKeepalive = netip.AddrPort{}, 0
			}
			cfg.Peers = append(cfg.Peers, peer)
			cfg.Routes = append(cfg.Routes, s.IPv4, s.IPv6)
		}
	}
	added := make(map[key.PublicKey]bool, len(in.Members))
	for _, m := range in.Members {
		// The member registry refuses both; still, never hand the
		// applier a configuration it would refuse whole.
		if m.PublicKey == v.Self.PublicKey || added[m.PublicKey] {
			continue
		}
		added[m.PublicKey] = true
		var allowed []netip.Prefix
		if m.IPv4.IsValid() {
			allowed = append(allowed, netip.PrefixFrom(m.IPv4, 32))
		}
		if m.IPv6.IsValid() {
			allowed = append(allowed, netip.PrefixFrom(m.IPv6, 128))
		}
		peer := netcfg.Peer{PublicKey: m.PublicKey, AllowedIPs: allowed}
		if m.Reach.IsValid() {
			peer.Endpoint, peer.PersistentKeepalive = m.Reach, PeerKeepalive
		}
		cfg.Peers = append(cfg.Peers, peer)
		if m.FullTunnel {
			if m.IPv4.IsValid() {
				cfg.Firewall.FullTunnel = append(cfg.Firewall.FullTunnel, m.IPv4)
			}
			if m.IPv6.IsValid() {
				cfg.Firewall.FullTunnel = append(cfg.Firewall.FullTunnel, m.IPv6)
			}
		}
	}
	sort.Slice(cfg.Peers, func(i, j int) bool {
		return cfg.Peers[i].PublicKey.String() < cfg.Peers[j].PublicKey.String()
	})
	sort.Slice(cfg.Routes, func(i, j int) bool { return cfg.Routes[i].String() < cfg.Routes[j].String() })
	return cfg
}

// takenKeys returns the keys no booture peer may have: the VPN members'
// and this booture's.
func takenKeys(in PlanInput) map[key.PublicKey]bool {
	taken := make(map[key.PublicKey]bool, len(in.Members)+1)
	taken[in.View.Self.PublicKey] = true
	for _, m := range in.Members {
		taken[m.PublicKey] = true
	}
	return taken
}

// SkippedPeer is a booture that Plan leaves out because its public key is
// taken: by a VPN member of this booture, or by this booture itself.
// WireGuard cannot have two peers with one key, and a configuration with
// two would be refused whole, and with it every later change of the
// network. The member wins: it was there first (the member registry refuses
// a booture's key), and the booture could only have its key by sharing the
// member's private key, or by a mistake.
type SkippedPeer struct {
	Name string
	Key  key.PublicKey
	// Member is set when the key is a VPN member's (else it is ours).
	Member bool
}

// PlanSkips returns the bootures Plan(in) leaves out for their keys, for
// the caller to report.
func PlanSkips(in PlanInput) []SkippedPeer {
	if in.View.Expelled {
		return nil
	}
	taken := takenKeys(in)
	var out []SkippedPeer
	for _, p := range in.View.Peers {
		if !p.State.Up() || p.SiteLost || p.Site == in.View.Site.Number {
			continue
		}
		if taken[p.PublicKey] {
			out = append(out, SkippedPeer{Name: p.Name, Key: p.PublicKey, Member: p.PublicKey != in.View.Self.PublicKey})
		}
	}
	return out
}

// initiates reports whether self starts the first handshake with peer.
func initiates(self, peer key.PublicKey) bool { return self.String() < peer.String() }

// planned reports whether Plan gives booture p a WireGuard peer: it is up
// and holds a site of its own (taken is takenKeys(in)).
func planned(in PlanInput, p Peer, taken map[key.PublicKey]bool) bool {
	return !in.View.Expelled && p.State.Up() && !p.SiteLost && p.Site != in.View.Site.Number && !taken[p.PublicKey]
}

// watched reports whether this booture watches p, a peer Plan configures,
// for a lost initiation: p came up less than a second past the last of
// resetAfter ago (a late reconcile still does the last reset), this
// booture initiates, and WireGuard has heard nothing from p.
func watched(in PlanInput, p Peer) bool {
	if p.UpSince.IsZero() || !initiates(in.View.Self.PublicKey, p.PublicKey) || in.Heard[p.PublicKey] {
		return false
	}
	age := in.Now.Sub(p.UpSince)
	return age >= 0 && age < resetAfter[len(resetAfter)-1]+time.Second
}

// resetSlot returns the last of resetAfter that p's age has reached (-1 if
// none) and whether the peer is due to be re-created for it: watched, and
// not re-created since that time.
func resetSlot(in PlanInput, p Peer) (slot int, due bool) {
	if !watched(in, p) {
		return -1, false
	}
	age := in.Now.Sub(p.UpSince)
	slot = -1
	for i, at := range resetAfter {
		if age >= at {
			slot = i
		}
	}
	if slot < 0 {
		return -1, false
	}
	return slot, in.Resets[p.PublicKey].Before(p.UpSince.Add(resetAfter[slot]))
}

// NeedsHeard reports whether Plan(in) depends on in.Heard: some new peer
// is watched. The daemon reads the interface only then.
func NeedsHeard(in PlanInput) bool {
	taken := takenKeys(in)
	for _, p := range in.View.Peers {
		if planned(in, p, taken) && watched(in, p) {
			return true
		}
	}
	return false
}

// PlanRecheck returns how long until Plan(in) may change by the passing of
// time alone (a responder's delay ending, a watched peer's next reset), or
// 0 if it never will: the reconciler plans again then.
func PlanRecheck(in PlanInput) time.Duration {
	taken := takenKeys(in)
	var next time.Duration
	soonest := func(left time.Duration) {
		if left > 0 && (next == 0 || left < next) {
			next = left
		}
	}
	for _, p := range in.View.Peers {
		if !planned(in, p, taken) || p.UpSince.IsZero() {
			continue
		}
		age := in.Now.Sub(p.UpSince)
		if !initiates(in.View.Self.PublicKey, p.PublicKey) {
			soonest(responderDelay - age)
			continue
		}
		if slot, _ := resetSlot(in, p); watched(in, p) && slot+1 < len(resetAfter) {
			soonest(resetAfter[slot+1] - age)
		}
	}
	return next
}
