//go:build linux

package linuxnet

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/booture/booture/key"
	"github.com/booture/booture/netcfg"
)

func TestPrefixFromIPNet(t *testing.T) {
	tests := []struct {
		in   net.IPNet
		want string
	}{
		{net.IPNet{IP: net.ParseIP("10.77.1.0").To4(), Mask: net.CIDRMask(24, 32)}, "10.77.1.0/24"},
		{net.IPNet{IP: net.ParseIP("10.77.1.0"), Mask: net.CIDRMask(24, 32)}, "10.77.1.0/24"},
		{net.IPNet{IP: net.ParseIP("10.77.1.0"), Mask: net.CIDRMask(120, 128)}, "10.77.1.0/24"},
		{net.IPNet{IP: net.ParseIP("fd00::"), Mask: net.CIDRMask(48, 128)}, "fd00::/48"},
	}
	for _, tt := range tests {
		got, ok := prefixFromIPNet(tt.in)
		if !ok || got.String() != tt.want {
			t.Errorf("prefixFromIPNet(%v) = %v, %t; want %s", tt.in, got, ok, tt.want)
		}
	}
	if _, ok := prefixFromIPNet(net.IPNet{}); ok {
		t.Error("empty IPNet accepted")
	}
}

// A peer change reaches wgctrl with the same meaning, and what wgctrl
// reports back converts to the same key, endpoint and allowed IPs.
func TestPeerConfigRoundTrip(t *testing.T) {
	priv, err := key.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := priv.Public()
	ka := 25 * time.Second
	pc := netcfg.PeerChange{
		PublicKey: pub, UpdateOnly: true,
		Endpoint:          netip.MustParseAddrPort("198.51.100.2:51820"),
		ReplaceAllowedIPs: true, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.77.2.0/24"), netip.MustParsePrefix("fd00:77:1:2::/64")},
		PersistentKeepalive: &ka,
	}
	wc := peerConfig(pc)
	if wc.PublicKey != wgtypes.Key(pub.Raw32()) || wc.PublicKey.String() != pub.String() {
		t.Errorf("public key %v, want %v", wc.PublicKey, pub)
	}
	if !wc.UpdateOnly || wc.Remove || !wc.ReplaceAllowedIPs || wc.PersistentKeepaliveInterval != &ka {
		t.Errorf("flags lost: %+v", wc)
	}
	if got := addrPortFromUDP(wc.Endpoint); got != pc.Endpoint {
		t.Errorf("endpoint %v, want %v", got, pc.Endpoint)
	}
	if got := fromIPNets(wc.AllowedIPs); !slices.Equal(got, pc.AllowedIPs) {
		t.Errorf("allowed IPs %v, want %v", got, pc.AllowedIPs)
	}
	if key.PublicKeyFromRaw32(wc.PublicKey) != pub {
		t.Error("the key does not come back from wgctrl's form")
	}

	// A removal and a replacement by no allowed IPs keep their meaning.
	if wc := peerConfig(netcfg.PeerChange{PublicKey: pub, Remove: true}); !wc.Remove || wc.Endpoint != nil || wc.AllowedIPs != nil {
		t.Errorf("removal: %+v", wc)
	}
	if wc := peerConfig(netcfg.PeerChange{PublicKey: pub, ReplaceAllowedIPs: true}); !wc.ReplaceAllowedIPs || wc.AllowedIPs == nil || len(wc.AllowedIPs) != 0 {
		t.Errorf("replace by none: %+v", wc)
	}
}
