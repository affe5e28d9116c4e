package mesh

import (
	"net/netip"
	"sort"
	"time"

	"github.com/booture/booture/netcfg"
)

// PeerKeepalive keeps NAT mappings between bootures open.
const PeerKeepalive = 25 * time.Second

// MemberPeer is an enabled VPN member of this booture, as the plan needs it.
type MemberPeer struct {
	PublicKey  Key
	IPv4, IPv6 netip.Addr
	FullTunnel bool
}

// PlanInput is everything the desired network state depends on.
type PlanInput struct {
	View       View
	PrivateKey Key
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
}

// Plan computes the desired WireGuard interface: one peer per booture that
// is up (alive or suspect) with its site as allowed IPs and routes, one peer
// per enabled member with its own addresses, and the packet filter. It is a
// pure function: same input, same Config.
func Plan(in PlanInput) netcfg.Config {
	v := in.View
	v4, v6 := v.Site.Booture()
	cfg := netcfg.Config{
		Interface:  in.Interface,
		PrivateKey: in.PrivateKey.WG(),
		ListenPort: in.ListenPort,
		MTU:        in.MTU,
		Addresses: []netip.Prefix{
			netip.PrefixFrom(v4, v.Site.IPv4.Bits()),
			netip.PrefixFrom(v6, v.Site.IPv6.Bits()),
		},
		Firewall: netcfg.Firewall{
			Enabled:             true,
			MeshIPv4:            PoolIPv4,
			MeshIPv6:            v.ULA,
			AllowMemberToMember: in.AllowMemberToMember,
			Uplink:              in.Uplink,
		},
	}
	if !v.Expelled {
		for _, p := range v.Peers {
			if !p.up() || p.SiteLost || p.Site == v.Site.Number {
				continue
			}
			s := SiteOf(v.ULA, p.Site)
			cfg.Peers = append(cfg.Peers, netcfg.Peer{
				PublicKey:           p.PublicKey.WG(),
				Endpoint:            p.Endpoint,
				AllowedIPs:          []netip.Prefix{s.IPv4, s.IPv6},
				PersistentKeepalive: PeerKeepalive,
			})
			cfg.Routes = append(cfg.Routes, s.IPv4, s.IPv6)
		}
	}
	for _, m := range in.Members {
		var allowed []netip.Prefix
		if m.IPv4.IsValid() {
			allowed = append(allowed, netip.PrefixFrom(m.IPv4, 32))
		}
		if m.IPv6.IsValid() {
			allowed = append(allowed, netip.PrefixFrom(m.IPv6, 128))
		}
		cfg.Peers = append(cfg.Peers, netcfg.Peer{PublicKey: m.PublicKey.WG(), AllowedIPs: allowed})
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
		return Key(cfg.Peers[i].PublicKey).String() < Key(cfg.Peers[j].PublicKey).String()
	})
	sort.Slice(cfg.Routes, func(i, j int) bool { return cfg.Routes[i].String() < cfg.Routes[j].String() })
	return cfg
}
