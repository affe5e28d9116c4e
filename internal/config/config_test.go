package config

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/booture/booture/mesh"
	"github.com/booture/booture/netcfg"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "booture.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsAreValid(t *testing.T) {
	c := Default()
	c.Name = "diois"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.WGPort != 51820 || c.GossipPort != 7946 || c.Interface != "booture0" || c.Socket != "/run/booture/bootured.sock" || c.StateDir != "/var/lib/booture" {
		t.Fatalf("defaults differ from the SPEC: %+v", c)
	}
	if c.Listen.IsValid() || c.Advertise != (Advertised{}) || c.Metrics.IsValid() || c.WireGuardMode != netcfg.ModeAuto ||
		c.GossipProfile != mesh.ProfileLAN || c.LogLevel != slog.LevelInfo || c.LogFormat != "text" || !c.LANHTTP || c.Resync != 10*time.Second {
		t.Fatalf("defaults differ from the documented ones: %+v", c)
	}
}

func TestFileAndFlags(t *testing.T) {
	file := writeConfig(t, `
name = "diois"
wg_port = 51000
gossip_port = 7000
resync = "30s"
plugin_dirs = ["/opt/plugins"]

[[service]]
plugin = "nextcloud"
upstream = "http://127.0.0.1:8080"
access = "members"
settings = { occ = "sudo -u www-data php occ" }
`)
	c, err := Load([]string{"--config", file, "--wg-port", "52000", "--name", "crest"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "crest" || c.WGPort != 52000 {
		t.Fatalf("flags must win over the file: %+v", c)
	}
	if c.GossipPort != 7000 || c.Resync != 30*time.Second || len(c.PluginDirs) != 1 {
		t.Fatalf("file settings lost: %+v", c)
	}
	if len(c.Services) != 1 || c.Services[0].Plugin != "nextcloud" || c.Services[0].Settings["occ"] == "" {
		t.Fatalf("services: %+v", c.Services)
	}
}

// TestMeshPorts: extra ports open to the mesh, from the file or repeated
// flags (which replace the file's list).
func TestMeshPorts(t *testing.T) {
	file := writeConfig(t, "name = \"diois\"\nmesh_tcp_ports = [5201, 25565]\nmesh_udp_ports = [34197]\n")
	c, err := Load([]string{"--config", file}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(c.MeshTCPPorts, c.MeshUDPPorts) != "[5201 25565] [34197]" {
		t.Fatalf("from the file: %v %v", c.MeshTCPPorts, c.MeshUDPPorts)
	}
	c, err = Load([]string{"--config", file, "--mesh-tcp-port", "22", "--mesh-tcp-port", "2222"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(c.MeshTCPPorts, c.MeshUDPPorts) != "[22 2222] [34197]" {
		t.Fatalf("flags over the file: %v %v", c.MeshTCPPorts, c.MeshUDPPorts)
	}
	if d := Default(); len(d.MeshTCPPorts)+len(d.MeshUDPPorts) != 0 {
		t.Fatalf("default opens ports: %v %v", d.MeshTCPPorts, d.MeshUDPPorts)
	}
}

func TestErrorsAreOneLineAndSayWhich(t *testing.T) {
	for _, tc := range []struct {
		file, flag string
		want       string
	}{
		{file: "nmae = \"x\"\n", want: "unknown key nmae"},
		{file: "[[service]]\nplugin = \"x\"\nupstrem = \"y\"\n", want: "unknown key service.upstrem"},
		{file: "wg_port = \"abc\"\n", want: "wg_port"},
		{file: "name = \n", want: "line 1"},
		{flag: "--name=Bad_Name", want: "name: invalid name"},
		{flag: "--wg-port=70000", want: "wg_port: 70000 is not a port"},
		{flag: "--interface=waytoolonginterfacename", want: "interface"},
		{flag: "--listen=not-an-ip", want: "listen"},
		{flag: "--advertise=bad host", want: "advertise"},
		{flag: "--wireguard-mode=magic", want: "wireguard_mode"},
		{flag: "--gossip-profile=fast", want: "gossip_profile"},
		{flag: "--mtu=100", want: "mtu"},
		{flag: "--resync=10ms", want: "resync"},
		{flag: "--metrics=localhost", want: "metrics"},
		{flag: "--mesh-tcp-port=0", want: "mesh_tcp_ports: 0 is not a port"},
		{flag: "--mesh-udp-port=x", want: "mesh-udp-port"},
		{file: "mesh_udp_ports = [70000]\n", want: "mesh_udp_ports: 70000 is not a port"},
		{file: "[[service]]\nplugin = \"web\"\n[[service]]\nplugin = \"web\"\n", want: "declared twice"},
		{file: "[[service]]\nplugin = \"web\"\naccess = \"world\"\n", want: "invalid access"},
	} {
		args := []string{"--name", "ok"}
		if tc.file != "" {
			args = append(args, "--config", writeConfig(t, tc.file))
		}
		if tc.flag != "" {
			args = append(args, tc.flag)
		}
		_, err := Load(args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q%q: got %v, want one line containing %q", tc.file, tc.flag, err, tc.want)
		}
	}
}

func TestAdvertise(t *testing.T) {
	for in, want := range map[string]Advertised{
		"198.51.100.1":          {IP: netip.MustParseAddr("198.51.100.1"), Host: "198.51.100.1"},
		"198.51.100.1:51000":    {IP: netip.MustParseAddr("198.51.100.1"), Host: "198.51.100.1", Port: 51000},
		"[2001:db8::1]:51000":   {IP: netip.MustParseAddr("2001:db8::1"), Host: "2001:db8::1", Port: 51000},
		"[::ffff:198.51.100.1]": {IP: netip.MustParseAddr("198.51.100.1"), Host: "198.51.100.1"},
		"box.example.org":       {Host: "box.example.org"},
		"box.example.org:443":   {Host: "box.example.org", Port: 443},
	} {
		got, err := ParseAdvertise(in)
		if err != nil || got != want {
			t.Errorf("%q: got %+v %v, want %+v", in, got, err, want)
		}
	}
}

func TestSanitizeName(t *testing.T) {
	for in, want := range map[string]string{"Diois.local": "diois", "my_box": "my-box", "-x-": "x"} {
		if got := SanitizeName(in); got != want {
			t.Errorf("SanitizeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	_, err := Load([]string{"--help"}, &out)
	if err == nil || !strings.Contains(out.String(), "--advertise") && !strings.Contains(out.String(), "-advertise") {
		t.Fatalf("help: %v\n%s", err, out.String())
	}
}

func FuzzDecode(f *testing.F) {
	f.Add("name = \"a\"\n[[service]]\nplugin = \"nextcloud\"\n")
	f.Add("wg_port = 1\nresync = \"1s\"\n")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := Decode(strings.NewReader(text), "fuzz.toml")
		if err != nil {
			if strings.Contains(err.Error(), "\n") && !strings.Contains(text, "\n") {
				t.Fatalf("multi-line error: %v", err)
			}
			return
		}
		c.Validate() // must not panic
	})
}

// Every setting that is parsed into a typed value, from the file and from
// its flag: a good value gives the typed value, a bad one a one-line error
// that starts with the key.
func TestTypedSettings(t *testing.T) {
	addr := netip.MustParseAddr
	for _, tc := range []struct {
		key, flag string // the file's key and the flag's name ("" if none)
		value     string
		check     func(Config) bool // for good values
		wantErr   string            // for bad values
	}{
		{key: "listen", flag: "listen", value: "198.51.100.7", check: func(c Config) bool { return c.Listen == addr("198.51.100.7") }},
		{key: "listen", flag: "listen", value: "2001:db8::7", check: func(c Config) bool { return c.Listen == addr("2001:db8::7") }},
		{key: "listen", flag: "listen", value: "", check: func(c Config) bool { return !c.Listen.IsValid() }},
		{key: "listen", flag: "listen", value: "not-an-ip", wantErr: `listen: "not-an-ip" is not an IP address`},
		{key: "listen", flag: "listen", value: "198.51.100.7:80", wantErr: "listen: "},
		{key: "advertise", flag: "advertise", value: "box.example.org:51000", check: func(c Config) bool {
			return c.Advertise == Advertised{Host: "box.example.org", Port: 51000}
		}},
		{key: "advertise", flag: "advertise", value: "203.0.113.9", check: func(c Config) bool {
			return c.Advertise == Advertised{IP: addr("203.0.113.9"), Host: "203.0.113.9"}
		}},
		{key: "advertise", flag: "advertise", value: "", check: func(c Config) bool { return c.Advertise == Advertised{} }},
		{key: "advertise", flag: "advertise", value: "bad host", wantErr: `advertise: "bad host" is neither`},
		{key: "advertise", flag: "advertise", value: "box.example.org:0", wantErr: "advertise: bad port"},
		{key: "wireguard_mode", flag: "wireguard-mode", value: "userspace", check: func(c Config) bool { return c.WireGuardMode == netcfg.ModeUserspace }},
		{key: "wireguard_mode", flag: "wireguard-mode", value: "kernel", check: func(c Config) bool { return c.WireGuardMode == netcfg.ModeKernel }},
		{key: "wireguard_mode", flag: "wireguard-mode", value: "auto", check: func(c Config) bool { return c.WireGuardMode == netcfg.ModeAuto }},
		{key: "wireguard_mode", flag: "wireguard-mode", value: "magic", wantErr: `wireguard_mode: "magic": want auto, kernel or userspace`},
		{key: "wireguard_mode", flag: "wireguard-mode", value: "", wantErr: "wireguard_mode: "},
		{key: "gossip_profile", flag: "gossip-profile", value: "wan", check: func(c Config) bool { return c.GossipProfile == mesh.ProfileWAN }},
		{key: "gossip_profile", flag: "gossip-profile", value: "lan", check: func(c Config) bool { return c.GossipProfile == mesh.ProfileLAN }},
		{key: "gossip_profile", flag: "gossip-profile", value: "fast", wantErr: `gossip_profile: "fast": want lan or wan`},
		{key: "metrics", flag: "metrics", value: "127.0.0.1:9477", check: func(c Config) bool { return c.Metrics == netip.MustParseAddrPort("127.0.0.1:9477") }},
		{key: "metrics", flag: "metrics", value: "[::1]:9477", check: func(c Config) bool { return c.Metrics == netip.MustParseAddrPort("[::1]:9477") }},
		{key: "metrics", flag: "metrics", value: "", check: func(c Config) bool { return !c.Metrics.IsValid() }},
		{key: "metrics", flag: "metrics", value: "localhost:9477", wantErr: `metrics: "localhost:9477" is not IP:PORT`},
		{key: "log_level", flag: "log-level", value: "debug", check: func(c Config) bool { return c.LogLevel == slog.LevelDebug }},
		{key: "log_level", flag: "log-level", value: "warn", check: func(c Config) bool { return c.LogLevel == slog.LevelWarn }},
		{key: "log_level", flag: "log-level", value: "error", check: func(c Config) bool { return c.LogLevel == slog.LevelError }},
		{key: "log_level", flag: "log-level", value: "INFO+2", wantErr: `log_level: "INFO+2": want debug, info, warn or error`},
		{key: "log_format", flag: "log-format", value: "json", check: func(c Config) bool { return c.LogFormat == "json" }},
		{key: "log_format", flag: "log-format", value: "xml", wantErr: `log_format: "xml": want text or json`},
		{key: "lan_http", flag: "lan-http", value: "off", check: func(c Config) bool { return !c.LANHTTP }},
		{key: "lan_http", flag: "lan-http", value: "auto", check: func(c Config) bool { return c.LANHTTP }},
		{key: "lan_http", flag: "lan-http", value: "on", wantErr: `lan_http: "on": want auto or off`},
		{key: "resync", flag: "resync", value: "1m", check: func(c Config) bool { return c.Resync == time.Minute }},
		{key: "resync", flag: "resync", value: "500ms", wantErr: "resync: 500ms is too short"},
		{key: "mtu", flag: "mtu", value: "1420", check: func(c Config) bool { return c.MTU == 1420 }},
		{key: "mtu", flag: "mtu", value: "100", wantErr: "mtu: 100 out of range"},
	} {
		fileValue := strconv.Quote(tc.value)
		if tc.key == "mtu" {
			fileValue = tc.value
		}
		sources := map[string][]string{
			"file": {"--config", writeConfig(t, tc.key+" = "+fileValue+"\n")},
			"flag": {"--" + tc.flag + "=" + tc.value},
		}
		for source, args := range sources {
			c, err := Load(append([]string{"--name", "ok"}, args...), &bytes.Buffer{})
			what := fmt.Sprintf("%s %s = %q", source, tc.key, tc.value)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("%s: %v", what, err)
			case tc.wantErr == "" && !tc.check(c):
				t.Errorf("%s: parsed into %+v", what, c)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "\n")):
				t.Errorf("%s: got error %v, want one line containing %q", what, err, tc.wantErr)
			}
		}
	}
}

// dns_upstreams (file only): IP or IP:PORT, port 53 by default.
func TestDNSUpstreams(t *testing.T) {
	c, err := Load([]string{"--name", "ok", "--config", writeConfig(t, `dns_upstreams = ["192.0.2.53", "192.0.2.54:5353", "[2001:db8::53]:53"]`+"\n")}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53"), netip.MustParseAddrPort("192.0.2.54:5353"), netip.MustParseAddrPort("[2001:db8::53]:53")}
	if !slices.Equal(c.DNSUpstreams, want) {
		t.Errorf("dns_upstreams = %v, want %v", c.DNSUpstreams, want)
	}
	_, err = Load([]string{"--name", "ok", "--config", writeConfig(t, `dns_upstreams = ["dns.example.org"]`+"\n")}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), `dns_upstreams: "dns.example.org" is not IP or IP:PORT`) {
		t.Errorf("bad upstream: %v", err)
	}
}

// Validate checks a Config built in code (as the daemon's tests do), with
// errors that name the key.
func TestValidateTyped(t *testing.T) {
	for _, tc := range []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) { c.WireGuardMode = "" }, "wireguard_mode: "},
		{func(c *Config) { c.GossipProfile = "fast" }, "gossip_profile: "},
		{func(c *Config) { c.Advertise = Advertised{Host: "x", Port: 70000} }, "advertise: 70000 is not a port"},
		{func(c *Config) { c.LogFormat = "" }, "log_format: "},
		{func(c *Config) { c.HTTPPort = 0 }, "http_port: 0 is not a port"},
		{func(c *Config) { c.Domain = "mesh." }, "domain: "},
	} {
		c := Default()
		c.Name = "ok"
		tc.set(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("got %v, want an error starting with %q", err, tc.want)
		}
	}
}

func TestPluginUser(t *testing.T) {
	if c := Default(); c.PluginUser != "" {
		t.Errorf("default plugin user %q, want empty (booture-plugin or nobody)", c.PluginUser)
	}
	file := writeConfig(t, "plugin_user = \"www-data\"\n")
	c, err := Load([]string{"--config", file}, &bytes.Buffer{})
	if err != nil || c.PluginUser != "www-data" {
		t.Fatalf("from the file: %q, %v", c.PluginUser, err)
	}
	if c, err = Load([]string{"--config", file, "--plugin-user", "root"}, &bytes.Buffer{}); err != nil || c.PluginUser != "root" {
		t.Fatalf("the flag wins: %q, %v", c.PluginUser, err)
	}
	var out bytes.Buffer
	Load([]string{"--help"}, &out)
	if !strings.Contains(out.String(), "plugin-user") || !strings.Contains(out.String(), "nobody") {
		t.Errorf("--help does not explain --plugin-user:\n%s", out.String())
	}
}
