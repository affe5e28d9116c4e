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

// WireGuard cannot cope with two peers that start a handshake at the same
// moment: each answers the other's initiation, which discards its own, both
// answers are refused, and no session exists until the retry 5 s later. Two
// bootures that learn of each other from the same gossip add each other
// within milliseconds, so a new pair of peers gets roles for its first
// seconds:
//   - the booture with the lower public key initiates: it knows the
//     other's endpoint at once, and sets the persistent keepalive (which
//     sends a first packet, hence a handshake) initiatorDelay later, once
//     the other side has surely added it too (a handshake that reaches a
//     booture that does not know the sender yet is lost for 5 s);
//   - the other one waits: no endpoint, so it cannot initiate (WireGuard
//     learns the endpoint from the initiator's packets), and no keepalive,
//     until responderDelay has passed; then it gets both, so that it can
//     reach the initiator by itself if the initiator cannot reach it (NAT).
const (
	initiatorDelay = time.Second
	responderDelay = 5 * time.Second
)

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
	// Now is the time the plan is made for (keepalive timing).
	Now time.Time
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
			if !p.State.Up() || p.SiteLost || p.Site == v.Site.Number {
				continue
			}
			if taken[p.PublicKey] {
				continue // see PlanSkips
			}
			s := SiteOf(v.ULA, p.Site)
			peer := netcfg.Peer{
				PublicKey:  p.PublicKey,
				Endpoint:   p.Endpoint,
				AllowedIPs: []netip.Prefix{s.IPv4, s.IPv6},
			}
			age := in.Now.Sub(p.UpSince)
			switch {
			case initiates(v.Self.PublicKey, p.PublicKey):
				if age >= initiatorDelay {
					peer.PersistentKeepalive = PeerKeepalive
				}
			case age >= responderDelay:
				peer.PersistentKeepalive = PeerKeepalive
			default:
				peer.Endpoint = netip.AddrPort{}
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

// PlanRecheck returns how long until Plan(in) changes by the passing of
// time alone (a new peer's role delay ending), or 0 if it never will: the
// reconciler plans again then.
func PlanRecheck(in PlanInput) time.Duration {
	var next time.Duration
	for _, p := range in.View.Peers {
		if !p.State.Up() || p.UpSince.IsZero() {
			continue
		}
		delay := responderDelay
		if initiates(in.View.Self.PublicKey, p.PublicKey) {
			delay = initiatorDelay
		}
		if left := delay - in.Now.Sub(p.UpSince); left > 0 && (next == 0 || left < next) {
			next = left
		}
	}
	return next
}
