package members

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/booture/booture/key"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func testServer(t testing.TB) Server {
	return Server{
		Name:      "diois",
		PublicKey: fixedKey("diois").Public(),
		Endpoint:  "198.51.100.1:51820",
		Site:      site3(t),
		MeshIPv4:  netip.MustParsePrefix("10.77.0.0/16"),
		MeshIPv6:  netip.MustParsePrefix("fd12:3456:789a::/48"),
	}
}

func testMember(name string, host int, fullTunnel bool) Member {
	s, _ := ParseSite("10.77.3.0/24", "fd12:3456:789a:3::/64")
	ip4, ip6 := s.Addrs(host)
	return Member{
		Name:       name,
		PublicKey:  fixedKey(name).Public(),
		IPv4:       ip4,
		IPv6:       ip6,
		FullTunnel: fullTunnel,
		Created:    time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

type goldenCase struct {
	name string
	cfg  ClientConfig
}

func goldenCases(t testing.TB) []goldenCase {
	priv := func(seed string) *key.PrivateKey { k := fixedKey(seed); return &k }
	srv := testServer(t)
	v6 := srv
	v6.Endpoint = "[2001:db8::1]:51820"
	host := srv
	host.Endpoint = "booture.example.org:443"
	host.Name = ""
	host.PersistentKeepalive = 15
	return []goldenCase{
		{"split", ConfigFor(testMember("alice", 2, false), priv("alice"), srv)},
		{"full-tunnel", ConfigFor(testMember("bob", 3, true), priv("bob"), srv)},
		{"own-key", ConfigFor(testMember("carol", 254, false), nil, host)},
		{"ipv6-endpoint", ConfigFor(testMember("dave", 17, false), priv("dave"), v6)},
	}
}

func TestRenderGolden(t *testing.T) {
	for _, tc := range goldenCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Render(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.name+".conf")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Render differs from %s (go test -update rewrites it):\n--- got\n%s--- want\n%s", path, got, want)
			}
			// What the apps parse is what we meant.
			parsed, err := parseLikeApps(got)
			if err != nil {
				t.Fatalf("the rendered configuration does not parse: %v\n%s", err, got)
			}
			want2 := tc.cfg
			want2.Comment, want2.PublicKey = "", key.PublicKey{}
			want2.Endpoint, _ = canonicalEndpoint(tc.cfg.Endpoint)
			if !reflect.DeepEqual(parsed, want2) {
				t.Errorf("parsed back:\n got %+v\nwant %+v", parsed, want2)
			}
		})
	}
}

func TestConfigFor(t *testing.T) {
	srv := testServer(t)
	k := fixedKey("alice")
	c := ConfigFor(testMember("alice", 2, false), &k, srv)
	if got := joinPrefixes(c.AllowedIPs); got != "10.77.0.0/16, fd12:3456:789a::/48" {
		t.Errorf("split AllowedIPs = %s", got)
	}
	if c.PersistentKeepalive != DefaultKeepalive {
		t.Errorf("keepalive = %d", c.PersistentKeepalive)
	}
	c = ConfigFor(testMember("bob", 3, true), nil, srv)
	if got := joinPrefixes(c.AllowedIPs); got != "0.0.0.0/0, ::/0" {
		t.Errorf("full tunnel AllowedIPs = %s", got)
	}
	if got := joinPrefixes(c.Addresses); got != "10.77.3.3/32, fd12:3456:789a:3::3/128" {
		t.Errorf("Addresses = %s", got)
	}
	if c.DNS[0].String() != "10.77.3.1" || c.DNS[1].String() != "fd12:3456:789a:3::1" {
		t.Errorf("DNS = %v", c.DNS)
	}
}

func TestRenderEndpoints(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.1:51820":        "198.51.100.1:51820",
		"[2001:db8::1]:51820":       "[2001:db8::1]:51820",
		"[2001:DB8:0::1]:051820":    "[2001:db8::1]:51820",
		"[::ffff:198.51.100.1]:1":   "198.51.100.1:1",
		"box.example.org:51820":     "box.example.org:51820",
		"box.example.org.:65535":    "box.example.org.:65535",
		"diois-1.booture.lan:51820": "diois-1.booture.lan:51820",
	} {
		got, err := canonicalEndpoint(in)
		if err != nil || got != want {
			t.Errorf("canonicalEndpoint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestRenderInvalid(t *testing.T) {
	good := goldenCases(t)[0].cfg
	var zero key.PrivateKey
	other := fixedKey("other")
	tests := []struct {
		name string
		edit func(*ClientConfig)
		msg  string
	}{
		{"newline in comment", func(c *ClientConfig) { c.Comment = "a\n[Peer]" }, "only printable ASCII"},
		{"non-ascii comment", func(c *ClientConfig) { c.Comment = "café" }, "only printable ASCII"},
		{"zero private key", func(c *ClientConfig) { c.PrivateKey = &zero }, "private key is all zeros"},
		{"mismatched keys", func(c *ClientConfig) { c.PrivateKey = &other }, "private key does not match public key"},
		{"no address", func(c *ClientConfig) { c.Addresses = nil }, "no address"},
		{"bad address", func(c *ClientConfig) { c.Addresses = []netip.Prefix{{}} }, "invalid address"},
		{"bad dns", func(c *ClientConfig) { c.DNS = []netip.Addr{{}} }, "invalid DNS server"},
		{"no peer key", func(c *ClientConfig) { c.PeerPublicKey = key.PublicKey{} }, "no booture public key"},
		{"no endpoint", func(c *ClientConfig) { c.Endpoint = "" }, "want HOST:PORT"},
		{"no port", func(c *ClientConfig) { c.Endpoint = "198.51.100.1" }, "want HOST:PORT"},
		{"bare ipv6", func(c *ClientConfig) { c.Endpoint = "2001:db8::1:51820" }, "want HOST:PORT"},
		{"port 0", func(c *ClientConfig) { c.Endpoint = "198.51.100.1:0" }, "not in 1..65535"},
		{"port too big", func(c *ClientConfig) { c.Endpoint = "198.51.100.1:65536" }, "not in 1..65535"},
		{"zoned", func(c *ClientConfig) { c.Endpoint = "[fe80::1%eth0]:51820" }, "zoned address"},
		{"bad host", func(c *ClientConfig) { c.Endpoint = "bad host:51820" }, "neither an IP address nor a DNS name"},
		{"injection", func(c *ClientConfig) { c.Endpoint = "a\nPostUp=x:1" }, "neither an IP address nor a DNS name"},
		{"no allowed ips", func(c *ClientConfig) { c.AllowedIPs = nil }, "no AllowedIPs"},
		{"unmasked allowed ips", func(c *ClientConfig) { c.AllowedIPs = []netip.Prefix{netip.MustParsePrefix("10.77.1.1/16")} }, "invalid AllowedIPs prefix"},
		{"negative keepalive", func(c *ClientConfig) { c.PersistentKeepalive = -1 }, "PersistentKeepalive -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			out, err := Render(c)
			oneLine(t, err)
			if out != "" || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Render = %q, %v; want %q", out, err, tt.msg)
			}
		})
	}
}

// TestWgQuickAccepts runs `wg-quick strip` on each rendered configuration:
// wg-quick parses the file, takes out what is its own (Address, DNS) and
// prints what it would hand to `wg setconf`.
func TestWgQuickAccepts(t *testing.T) {
	wgQuick, err := exec.LookPath("wg-quick")
	if err != nil {
		t.Skip("wg-quick not installed (apt-get install wireguard-tools)")
	}
	if os.Geteuid() != 0 {
		t.Skip("wg-quick strip re-executes itself with sudo when not root")
	}
	for _, tc := range goldenCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			text, err := Render(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "wgtest0.conf")
			if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(wgQuick, "strip", path).CombinedOutput()
			if err != nil {
				t.Fatalf("wg-quick strip: %v\n%s", err, out)
			}
			stripped := string(out)
			if strings.Contains(stripped, "Warning") {
				t.Errorf("wg-quick warns:\n%s", stripped)
			}
			// wg-quick consumed Address and DNS, and passed on only
			// keys that `wg setconf` knows.
			kv, err := parseLikeApps(stripped)
			if err != nil {
				t.Fatalf("stripped output does not parse: %v\n%s", err, stripped)
			}
			if kv.Addresses != nil || kv.DNS != nil {
				t.Errorf("wg-quick did not take Address/DNS:\n%s", stripped)
			}
			for _, line := range strings.Split(stripped, "\n") {
				key, _, _ := strings.Cut(line, "=")
				switch strings.TrimSpace(key) {
				case "", "[Interface]", "[Peer]", "PrivateKey", "PublicKey", "Endpoint", "AllowedIPs", "PersistentKeepalive":
				default:
					if !strings.HasPrefix(strings.TrimSpace(line), "#") {
						t.Errorf("wg setconf would get an unknown line %q", line)
					}
				}
			}
			if kv.PeerPublicKey != tc.cfg.PeerPublicKey || (tc.cfg.PrivateKey != nil) != (kv.PrivateKey != nil) {
				t.Errorf("keys lost by wg-quick strip:\n%s", stripped)
			}
			wgSetconf(t, tc.cfg, stripped)
		})
	}
}

// wgSetconf hands the output of wg-quick strip to `wg setconf`, as wg-quick
// up does, against a fake userspace WireGuard interface: wg parses the whole
// configuration and sends it over the UAPI socket, where the test reads
// what wg understood.
func wgSetconf(t *testing.T, cfg ClientConfig, stripped string) {
	wg, err := exec.LookPath("wg")
	if err != nil {
		t.Log("wg not installed: skipping wg setconf")
		return
	}
	host, _, _ := net.SplitHostPort(cfg.Endpoint)
	if _, err := netip.ParseAddr(host); err != nil {
		t.Logf("endpoint %s is a name, which wg would resolve (offline here): skipping wg setconf", cfg.Endpoint)
		return
	}
	const sockDir = "/var/run/wireguard"
	if err := os.MkdirAll(sockDir, 0o755); err != nil {
		t.Logf("cannot create %s: %v: skipping wg setconf", sockDir, err)
		return
	}
	iface := fmt.Sprintf("bt%d", os.Getpid()%100000)
	sock := filepath.Join(sockDir, iface+".sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(sock)
	defer l.Close()
	got := make(chan string, 1)
	go func() {
		// One connection per request; wg may first probe the socket.
		for {
			conn, err := l.Accept()
			if err != nil {
				close(got)
				return
			}
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			var req strings.Builder
			buf := make([]byte, 4096)
			for !strings.HasSuffix(req.String(), "\n\n") {
				n, err := conn.Read(buf)
				req.Write(buf[:n])
				if err != nil {
					break
				}
			}
			if strings.HasPrefix(req.String(), "set=1\n") {
				conn.Write([]byte("errno=0\n\n"))
				conn.Close()
				got <- req.String()
				return
			}
			conn.Close()
		}
	}()
	conf := filepath.Join(t.TempDir(), "stripped.conf")
	if err := os.WriteFile(conf, []byte(stripped), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(wg, "setconf", iface, conf).CombinedOutput(); err != nil {
		t.Fatalf("wg setconf refused the configuration: %v\n%s\n%s", err, out, stripped)
	}
	req, ok := <-got
	if !ok {
		t.Fatal("wg setconf sent nothing")
	}
	hexKey := func(k [key.Len]byte) string { return fmt.Sprintf("%x", k[:]) }
	want := []string{
		"public_key=" + hexKey(cfg.PeerPublicKey.Raw32()),
		"endpoint=" + cfg.Endpoint,
		"persistent_keepalive_interval=" + strconv.Itoa(cfg.PersistentKeepalive),
	}
	if cfg.PrivateKey != nil {
		want = append(want, "private_key="+hexKey(cfg.PrivateKey.RevealRaw32()))
	}
	for _, p := range cfg.AllowedIPs {
		want = append(want, "allowed_ip="+p.String())
	}
	for _, w := range want {
		if !strings.Contains(req, w+"\n") {
			t.Errorf("wg did not send %q; it sent:\n%s", w, req)
		}
	}
}

// parseLikeApps parses a configuration the way the WireGuard apps do
// (wireguard-android's Config.parse, wireguard-apple's
// TunnelConfiguration(fromWgQuickConfig:), wireguard-windows' conf parser):
// '#' starts a comment, sections are [Interface] then one [Peer], each line
// is Key = Value with a known key, values are comma-separated lists where
// the key allows it. It returns what it read as a ClientConfig.
func parseLikeApps(text string) (ClientConfig, error) {
	var c ClientConfig
	section := ""
	seen := map[string]bool{}
	fail := func(format string, args ...any) (ClientConfig, error) {
		return ClientConfig{}, fmt.Errorf(format, args...)
	}
	list := func(v string) []string {
		var out []string
		for _, s := range strings.Split(v, ",") {
			out = append(out, strings.TrimSpace(s))
		}
		return out
	}
	for n, raw := range strings.Split(text, "\n") {
		line, _, _ := strings.Cut(raw, "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "[") {
			switch strings.ToLower(line) {
			case "[interface]":
				if section != "" {
					return fail("line %d: [Interface] after %s", n+1, section)
				}
			case "[peer]":
				if section != "[interface]" {
					return fail("line %d: [Peer] must follow [Interface]", n+1)
				}
			default:
				return fail("line %d: unknown section %s", n+1, line)
			}
			section = strings.ToLower(line)
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			return fail("line %d: no '=' in %q", n+1, line)
		}
		name, value = strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(value)
		if seen[section+name] {
			return fail("line %d: %s given twice", n+1, name)
		}
		seen[section+name] = true
		var err error
		switch section + name {
		case "[interface]privatekey":
			var k key.PrivateKey
			k, err = key.ParsePrivateKey(value)
			c.PrivateKey = &k
		case "[interface]address":
			for _, s := range list(value) {
				var p netip.Prefix
				if p, err = netip.ParsePrefix(s); err != nil {
					break
				}
				c.Addresses = append(c.Addresses, p)
			}
		case "[interface]dns":
			for _, s := range list(value) {
				var a netip.Addr
				if a, err = netip.ParseAddr(s); err != nil {
					break
				}
				c.DNS = append(c.DNS, a)
			}
		case "[peer]publickey":
			c.PeerPublicKey, err = key.ParsePublicKey(value)
		case "[peer]endpoint":
			var port string
			if _, port, err = net.SplitHostPort(value); err == nil {
				_, err = strconv.ParseUint(port, 10, 16)
			}
			c.Endpoint = value
		case "[peer]allowedips":
			for _, s := range list(value) {
				var p netip.Prefix
				if p, err = netip.ParsePrefix(s); err != nil {
					break
				}
				c.AllowedIPs = append(c.AllowedIPs, p)
			}
		case "[peer]persistentkeepalive":
			c.PersistentKeepalive, err = strconv.Atoi(value)
		default:
			return fail("line %d: unknown key %q in %s", n+1, name, section)
		}
		if err != nil {
			return fail("line %d: %s: %v", n+1, name, err)
		}
	}
	if !seen["[peer]publickey"] {
		return fail("no [Peer] PublicKey")
	}
	return c, nil
}
