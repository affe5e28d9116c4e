package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
		"198.51.100.1":        {Host: "198.51.100.1"},
		"198.51.100.1:51000":  {Host: "198.51.100.1", Port: 51000},
		"[2001:db8::1]:51000": {Host: "2001:db8::1", Port: 51000},
		"box.example.org":     {Host: "box.example.org"},
		"box.example.org:443": {Host: "box.example.org", Port: 443},
	} {
		c := Config{Advertise: in}
		got, err := c.AdvertiseHostPort()
		if err != nil || got.Host != want.Host || got.Port != want.Port {
			t.Errorf("%q: got %+v %v", in, got, err)
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
		c := Default()
		if err := c.Decode(strings.NewReader(text), "fuzz.toml"); err != nil {
			if strings.Contains(err.Error(), "\n") && !strings.Contains(text, "\n") {
				t.Fatalf("multi-line error: %v", err)
			}
			return
		}
		c.Validate() // must not panic
	})
}
