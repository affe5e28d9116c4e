package netcfg

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/booture/booture/key"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// golden compares got with testdata/name (rewritten with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test ./netcfg/ -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update if the change is intended)\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// testRaw returns fixed key bytes; as a private key they are a valid scalar.
func testRaw(n byte) [key.Len]byte {
	var k [key.Len]byte
	for i := range k {
		k[i] = n
	}
	return k
}

func testPriv(n byte) key.PrivateKey { return key.PrivateKeyFromRaw32(testRaw(n)) }
func testPub(n byte) key.PublicKey   { return key.PublicKeyFromRaw32(testRaw(n)) }

func pfx(s string) netip.Prefix       { return netip.MustParsePrefix(s) }
func ap(s string) netip.AddrPort      { return netip.MustParseAddrPort(s) }
func pfxs(s ...string) []netip.Prefix { return mapSlice(s, pfx) }
func mapSlice[T, U any](in []T, f func(T) U) []U {
	out := make([]U, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

const ula = "fd00:77:1"

// baseConfig is booture 1 of a mesh, with two peer bootures and a member.
func baseConfig() Config {
	return Config{
		Interface:  "booture0",
		PrivateKey: testPriv(1),
		ListenPort: 51820,
		Addresses:  pfxs("10.77.1.1/24", ula+":1::1/64"),
		Peers: []Peer{
			{PublicKey: testPub(2), Endpoint: ap("198.51.100.2:51820"), AllowedIPs: pfxs("10.77.2.0/24", ula+":2::/64"), PersistentKeepalive: 25 * time.Second},
			{PublicKey: testPub(3), Endpoint: ap("198.51.100.3:51820"), AllowedIPs: pfxs("10.77.3.0/24", ula+":3::/64"), PersistentKeepalive: 25 * time.Second},
			{PublicKey: testPub(9), AllowedIPs: pfxs("10.77.1.9/32", ula+":1::9/128")},
		},
		Routes:      pfxs("10.77.2.0/24", ula+":2::/64", "10.77.3.0/24", ula+":3::/64"),
		Unreachable: pfxs("10.77.0.0/16", ula+"::/48"),
		Firewall: Firewall{
			Enabled:  true,
			MeshIPv4: pfx("10.77.0.0/16"),
			MeshIPv6: pfx(ula + "::/48"),
			TCPPorts: []uint16{80, 53},
			UDPPorts: []uint16{53},
		},
	}
}

// observedOf is what a system that applied cfg reports (as the fake or the
// kernel would), on a host whose uplink is eth0 with force_forwarding.
func observedOf(cfg Config) Observed {
	obs := Observed{
		MTU: cfg.MTU, Up: true, PublicKey: cfg.PrivateKey.Public(), ListenPort: cfg.ListenPort,
		Addresses: cfg.Addresses, DefaultMTU: 1320, Uplink: "eth0",
		Sysctls: freshSysctls(), Changed: map[string]string{},
	}
	if obs.MTU == 0 {
		obs.MTU = obs.DefaultMTU
	}
	for _, p := range cfg.Peers {
		obs.Peers = append(obs.Peers, PeerState{PublicKey: p.PublicKey, Endpoint: p.Endpoint, AllowedIPs: p.AllowedIPs, PersistentKeepalive: p.PersistentKeepalive})
	}
	obs.Routes = append(obs.Routes, cfg.Routes...)
	obs.Unreachable = append(obs.Unreachable, cfg.Unreachable...)
	if cfg.Firewall.Enabled {
		fs := ResolveFirewall(cfg, obs.Uplink)
		obs.Firewall = &fs
	}
	for _, op := range Diff(obs, cfg) {
		if op.Kind != OpSysctl {
			panic("observedOf: unexpected op " + op.String())
		}
		obs.Changed[op.Sysctl] = obs.Sysctls[op.Sysctl]
		obs.Sysctls[op.Sysctl] = op.Value
	}
	return obs
}

func freshSysctls() map[string]string {
	return map[string]string{
		"net/ipv4/conf/booture0/forwarding":       "0",
		"net/ipv6/conf/booture0/force_forwarding": "0",
		"net/ipv6/conf/all/forwarding":            "0",
		"net/ipv4/conf/eth0/forwarding":           "0",
		"net/ipv6/conf/eth0/force_forwarding":     "0",
		"net/ipv6/conf/eth0/accept_ra":            "1",
	}
}

func renderOps(ops []Op) string {
	var b strings.Builder
	for _, op := range ops {
		for _, l := range op.Lines() {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func TestDiffGolden(t *testing.T) {
	fresh := Observed{MTU: 1420, DefaultMTU: 1320, Uplink: "eth0", Sysctls: freshSysctls()}
	tests := []struct {
		name string
		obs  func() Observed
		cfg  func() Config
	}{
		{"first-apply", func() Observed { return fresh }, baseConfig},
		{"unchanged", func() Observed { return observedOf(baseConfig()) }, baseConfig},
		{"join-one-booture", func() Observed { return observedOf(baseConfig()) }, func() Config {
			c := baseConfig()
			c.Peers = append(c.Peers, Peer{PublicKey: testPub(4), Endpoint: ap("198.51.100.4:51820"), AllowedIPs: pfxs("10.77.4.0/24"), PersistentKeepalive: 25 * time.Second})
			c.Routes = append(c.Routes, pfx("10.77.4.0/24"))
			return c
		}},
		{"peer-changes", func() Observed { return observedOf(baseConfig()) }, func() Config {
			c := baseConfig()
			c.Peers[0].Endpoint = ap("203.0.113.2:51999")            // moved
			c.Peers[1].AllowedIPs = pfxs("10.77.3.0/24")             // lost its IPv6 site
			c.Peers[1].PersistentKeepalive = 1500 * time.Millisecond // truncated to 1 s
			c.Peers = c.Peers[:2]                                    // member removed
			return c
		}},
		{"reset-peer", func() Observed { return observedOf(baseConfig()) }, func() Config {
			c := baseConfig()
			c.Peers[0].Reset = true // unchanged, re-created: removed then added whole
			c.Peers = append(c.Peers, Peer{PublicKey: testPub(4), Endpoint: ap("198.51.100.4:51820"), AllowedIPs: pfxs("10.77.4.0/24"), PersistentKeepalive: 25 * time.Second, Reset: true})
			c.Routes = append(c.Routes, pfx("10.77.4.0/24"))
			return c
		}},
		{"learnt-endpoint-kept", func() Observed {
			o := observedOf(baseConfig())
			o.Peers[2].Endpoint = ap("203.0.113.50:41000") // roaming member, learnt
			return o
		}, baseConfig},
		{"mapped-forms-equal", func() Observed {
			o := observedOf(baseConfig())
			o.Peers[0].Endpoint = netip.AddrPortFrom(netip.AddrFrom16(netip.MustParseAddr("198.51.100.2").As16()), 51820)
			o.Peers[0].AllowedIPs = pfxs(ula+":2::/64", "10.77.2.0/24", "10.77.2.0/24")
			return o
		}, baseConfig},
		{"drift-repaired", func() Observed {
			o := observedOf(baseConfig())
			o.Peers = o.Peers[1:]                                                    // peer removed by hand
			o.Routes = append(pfxs("10.77.1.0/24", "10.99.0.0/16"), o.Routes[1:]...) // connected, stray; one deleted
			o.Addresses = append(o.Addresses, pfx("192.0.2.1/24"))                   // stray address
			o.Firewall = nil                                                         // table deleted by hand
			o.MTU = 1500
			o.Up = false
			return o
		}, baseConfig},
		{"unreachable-routes-repaired", func() Observed {
			o := observedOf(baseConfig())
			o.Unreachable = pfxs("10.77.0.0/16", "fd00:99::/48") // one deleted by hand, one of an old mesh
			return o
		}, baseConfig},
		{"table-left-by-earlier-run", func() Observed {
			o := observedOf(baseConfig())
			o.Firewall = &FirewallState{}
			return o
		}, baseConfig},
		{"firewall-changes", func() Observed { return observedOf(baseConfig()) }, func() Config {
			c := baseConfig()
			c.Firewall.FullTunnel = []netip.Addr{netip.MustParseAddr(ula + ":1::9"), netip.MustParseAddr("10.77.1.9")}
			return c
		}},
		{"firewall-disabled", func() Observed { return observedOf(baseConfig()) }, func() Config {
			c := baseConfig()
			c.Firewall = Firewall{}
			return c
		}},
		{"new-key-and-port", func() Observed { return observedOf(baseConfig()) }, func() Config {
			c := baseConfig()
			c.PrivateKey = testPriv(7)
			c.ListenPort = 51821
			c.MTU = 1280
			return c
		}},
		{"ipv6-fallback-without-force-forwarding", func() Observed {
			o := fresh
			o.Sysctls = freshSysctls()
			delete(o.Sysctls, "net/ipv6/conf/booture0/force_forwarding")
			delete(o.Sysctls, "net/ipv6/conf/eth0/force_forwarding")
			return o
		}, baseConfig},
		{"host-already-routes-ipv6", func() Observed {
			o := fresh
			o.Sysctls = freshSysctls()
			o.Sysctls["net/ipv6/conf/all/forwarding"] = "1"
			return o
		}, baseConfig},
		{"last-peer-gone-restores-forwarding", func() Observed {
			c := baseConfig()
			c.Firewall.FullTunnel = []netip.Addr{netip.MustParseAddr("10.77.1.9")}
			return observedOf(c)
		}, func() Config {
			c := baseConfig()
			c.Peers, c.Routes = nil, nil
			return c
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg()
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("diff", tt.name+".golden"), renderOps(Diff(tt.obs(), cfg)))
		})
	}
}

func TestDiffUnchangedIsEmpty(t *testing.T) {
	cfg := baseConfig()
	cfg.Firewall.FullTunnel = []netip.Addr{netip.MustParseAddr("10.77.1.9")}
	if ops := Diff(observedOf(cfg), cfg); len(ops) != 0 {
		t.Fatalf("identical state gave ops:\n%s", renderOps(ops))
	}
}

func TestDiffNeverReplacesPeers(t *testing.T) {
	obs := observedOf(baseConfig())
	cfg := baseConfig()
	cfg.Peers[0].AllowedIPs = pfxs("10.77.2.0/24")
	for _, op := range Diff(obs, cfg) {
		if op.Kind != OpPeer {
			continue
		}
		if op.Peer.PublicKey != testPub(2) {
			t.Errorf("peer %s touched, only %s changed", op.Peer.PublicKey, testPub(2))
		}
		if !op.Peer.UpdateOnly || op.Peer.Endpoint.IsValid() || op.Peer.PersistentKeepalive != nil {
			t.Errorf("update carries more than the change: %+v", op.Peer)
		}
	}
}

func TestFirewallGolden(t *testing.T) {
	base := baseConfig()
	tests := []struct {
		name   string
		fw     func() Firewall
		uplink string
	}{
		{"isolated", func() Firewall { return base.Firewall }, "eth0"},
		{"member-to-member-allowed", func() Firewall {
			f := base.Firewall
			f.AllowMemberToMember = true
			return f
		}, "eth0"},
		{"full-tunnel", func() Firewall {
			f := base.Firewall
			f.FullTunnel = []netip.Addr{netip.MustParseAddr("10.77.1.9"), netip.MustParseAddr(ula + ":1::9"), netip.MustParseAddr("::ffff:10.77.1.5"), netip.MustParseAddr("10.77.1.9")}
			f.Uplink = "wan0"
			return f
		}, "eth0"},
		{"full-tunnel-without-uplink", func() Firewall {
			f := base.Firewall
			f.FullTunnel = []netip.Addr{netip.MustParseAddr("10.77.1.9")}
			return f
		}, ""},
		{"ipv4-only", func() Firewall {
			f := base.Firewall
			f.MeshIPv6 = netip.Prefix{}
			return f
		}, "eth0"},
		{"no-open-ports", func() Firewall {
			f := base.Firewall
			f.TCPPorts, f.UDPPorts = nil, nil
			return f
		}, "eth0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			cfg.Firewall = tt.fw()
			fs := ResolveFirewall(cfg, tt.uplink)
			golden(t, filepath.Join("firewall", tt.name+".golden"), strings.Join(fs.Lines(), "\n")+"\n")
		})
	}
}

func TestIsMemberAddr(t *testing.T) {
	v4, v6 := pfx("10.77.0.0/16"), pfx(ula+"::/48")
	tests := []struct {
		pool netip.Prefix
		addr string
		want bool
	}{
		{v4, "10.77.1.1", false},
		{v4, "10.77.1.2", true},
		{v4, "10.77.200.254", true},
		{v4, "10.77.3.0", true},
		{v4, "::ffff:10.77.1.7", true},
		{v4, "10.78.1.2", false},
		{v6, ula + ":1::1", false},
		{v6, ula + ":1::2", true},
		{v6, ula + ":1:0:1:0:1", true},
		{v6, "fd00:78::2", false},
	}
	for _, tt := range tests {
		if got := IsMemberAddr(tt.pool, netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("IsMemberAddr(%v, %s) = %t, want %t", tt.pool, tt.addr, got, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error; "" for valid
	}{
		{"valid", func(*Config) {}, ""},
		{"no interface", func(c *Config) { c.Interface = "" }, "empty name"},
		{"long interface", func(c *Config) { c.Interface = "booture-is-too-long" }, "longer than 15"},
		{"slash", func(c *Config) { c.Interface = "a/b" }, "not allowed"},
		{"no key", func(c *Config) { c.PrivateKey = key.PrivateKey{} }, "private key"},
		{"port", func(c *Config) { c.ListenPort = 70000 }, "listen port"},
		{"mtu", func(c *Config) { c.MTU = 100 }, "mtu"},
		{"dup peer", func(c *Config) { c.Peers = append(c.Peers, c.Peers[0]) }, "twice"},
		{"own key", func(c *Config) { c.Peers[0].PublicKey = c.PrivateKey.Public() }, "own key"},
		{"zero peer key", func(c *Config) { c.Peers[0].PublicKey = key.PublicKey{} }, "without public key"},
		{"endpoint port", func(c *Config) { c.Peers[0].Endpoint = netip.AddrPortFrom(netip.MustParseAddr("198.51.100.2"), 0) }, "without port"},
		{"keepalive", func(c *Config) { c.Peers[0].PersistentKeepalive = -time.Second }, "keepalive"},
		{"bad allowed", func(c *Config) { c.Peers[0].AllowedIPs = []netip.Prefix{{}} }, "allowed ip"},
		{"bad route", func(c *Config) { c.Routes = []netip.Prefix{{}} }, "route"},
		{"bad unreachable", func(c *Config) { c.Unreachable = []netip.Prefix{{}} }, "unreachable route"},
		{"port 0", func(c *Config) { c.Firewall.UDPPorts = []uint16{53, 0} }, "port 0"},
		{"pool v4", func(c *Config) { c.Firewall.MeshIPv4 = pfx("10.77.1.0/25") }, "ipv4 pool"},
		{"pool v6", func(c *Config) { c.Firewall.MeshIPv6 = pfx("10.0.0.0/8") }, "ipv6 pool"},
		{"uplink", func(c *Config) { c.Firewall.Uplink = "x/y" }, "uplink"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseConfig()
			tt.mutate(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want == "":
			case err == nil || !strings.Contains(err.Error(), tt.want):
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			case !errors.Is(err, ErrInvalidConfig):
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

// TestNoSecretInOutput prints a Config and its Ops every way a careless
// caller might and looks for the private key.
func TestNoSecretInOutput(t *testing.T) {
	cfg := baseConfig()
	cfg.PrivateKey = testPriv(0x42)
	raw := cfg.PrivateKey.RevealRaw32()
	secrets := []string{cfg.PrivateKey.RevealBase64(), fmt.Sprintf("%x", raw[:]), fmt.Sprint(raw[:])}

	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x", "%q"} {
		fmt.Fprintf(&out, verb+"\n", cfg)
		fmt.Fprintf(&out, verb+"\n", &cfg)
	}
	ops := Diff(Observed{}, cfg)
	for _, op := range ops {
		fmt.Fprintf(&out, "%v %+v %#v %s\n", op, op, op, op.Lines())
	}
	fmt.Fprintf(&out, "%+v %#v\n", ops, ops)
	log := slog.New(slog.NewJSONHandler(&out, nil))
	log.Info("cfg", "cfg", cfg, "ops", ops)
	slog.New(slog.NewTextHandler(&out, nil)).Info("cfg", "cfg", cfg)
	for _, s := range secrets {
		if strings.Contains(out.String(), s) {
			t.Fatalf("private key found in output:\n%s", out.String())
		}
	}
	if !strings.Contains(out.String(), cfg.PrivateKey.Public().String()) {
		t.Errorf("public key missing from output; the redaction hides too much")
	}
	// JSON of an Op carries no key either (it has no private key field).
	b, _ := json.Marshal(ops)
	for _, s := range secrets {
		if bytes.Contains(b, []byte(s)) {
			t.Fatal("private key found in JSON of ops")
		}
	}
}

func TestSysctlName(t *testing.T) {
	if got := SysctlName("net/ipv4/conf/eth0.100/forwarding"); got != "net.ipv4.conf.eth0/100.forwarding" {
		t.Errorf("got %s", got)
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": ModeAuto, "auto": ModeAuto, "kernel": ModeKernel, "userspace": ModeUserspace} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseMode("fast"); err == nil {
		t.Error("ParseMode accepted fast")
	}
}
