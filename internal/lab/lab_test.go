package lab

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseWGDump(t *testing.T) {
	out := "cHJpdg==\tpubA=\t51820\toff\n" +
		"pubB=\t(none)\t198.51.100.2:51820\t10.77.2.0/24,fd00:1:2:2::/64\t1700000000\t100\t200\t25\n" +
		"pubC=\t(none)\t(none)\t(none)\t0\t0\t0\toff\n"
	d, err := parseWGDump(out)
	if err != nil {
		t.Fatal(err)
	}
	if d.PublicKey != "pubA=" || d.ListenPort != 51820 || len(d.Peers) != 2 {
		t.Fatalf("%+v", d)
	}
	b, ok := d.Peer("pubB=")
	if !ok || b.Endpoint != "198.51.100.2:51820" || !slices.Equal(b.AllowedIP, []string{"10.77.2.0/24", "fd00:1:2:2::/64"}) ||
		b.LatestHandshake.Unix() != 1700000000 || b.RxBytes != 100 || b.TxBytes != 200 || b.Keepalive != "25" {
		t.Errorf("%+v", b)
	}
	c, _ := d.Peer("pubC=")
	if !c.LatestHandshake.IsZero() || c.AllowedIP != nil {
		t.Errorf("%+v", c)
	}
	if _, err := parseWGDump("garbage"); err == nil {
		t.Error("garbage accepted")
	}
}

func TestPingStats(t *testing.T) {
	out := "--- 10.77.2.1 ping statistics ---\n5 packets transmitted, 4 received, +1 errors, 20% packet loss, time 803ms\nrtt min/avg/max/mdev = 0.212/0.345/0.601/0.140 ms\n"
	m := pingStats.FindStringSubmatch(out)
	if m == nil || m[1] != "5" || m[2] != "4" {
		t.Fatalf("%q", m)
	}
	if r := pingRTT.FindStringSubmatch(out); r == nil || r[1] != "0.345" {
		t.Fatalf("%q", r)
	}
}

// leftovers lists what of lab id is still on the machine.
func leftovers(id, dir string) []string {
	var left []string
	r := run(nilContext(), 0, nil, "ip", "netns", "list")
	for _, l := range strings.Split(r.Stdout, "\n") {
		if strings.HasPrefix(l, "bt"+id) {
			left = append(left, "namespace "+strings.Fields(l)[0])
		}
	}
	g, _ := filepath.Glob("/etc/netns/bt" + id + "*")
	left = append(left, g...)
	g, _ = filepath.Glob("/var/run/wireguard/bt" + id + "*")
	left = append(left, g...)
	for _, f := range []string{dir, filepath.Join(RunDir, id)} {
		if _, err := os.Stat(f); err == nil {
			left = append(left, f)
		}
	}
	return left
}

// a lab with hosts, the internet and a member client leaves nothing behind
// once closed; and the janitor removes a lab whose process is gone.
func TestCloseAndJanitor(t *testing.T) {
	Require(t)
	mk := func() *Lab {
		l, err := Create(t.Context(), Options{Hosts: 2, Internet: true, Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		if err := l.StartAll(); err != nil {
			t.Fatal(err)
		}
		if err := JoinAll(l.H(1), l.H(2)); err != nil {
			t.Fatal(err)
		}
		r := l.H(1).CLI("member", "add", "m")
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
		m, err := l.AddMember()
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Up(r.Stdout); err != nil {
			t.Fatal(err)
		}
		if err := m.WaitPing("10.77.1.1", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		return l
	}

	l := mk()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(l.ID, l.Dir); len(left) > 0 {
		t.Errorf("Close left %v", left)
	}

	// A crashed run: its process is gone (pid 0 here), its lab is not.
	l = mk()
	for _, h := range l.Hosts {
		h.Kill()
	}
	if err := os.WriteFile(filepath.Join(RunDir, l.ID), []byte("0 0 "+l.Dir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	janitor(t.Logf)
	if left := leftovers(l.ID, l.Dir); len(left) > 0 {
		t.Errorf("the janitor left %v", left)
	}
}

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// Probes between three hosts over their LAN addresses (no booture needed):
// every direction arrives, and Wait returns once every host has answered.
func TestProbes(t *testing.T) {
	Require(t)
	l, err := Create(t.Context(), Options{Hosts: 3, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	addrs := []netip.Addr{l.H(1).IP, l.H(2).IP, l.H(3).IP}
	t0 := time.Now()
	p, err := StartProbes(l.Hosts, addrs, 10*time.Millisecond, t0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Wait(t.Context(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	limit := time.Since(t0)
	for i, row := range p.Arrivals() {
		for j, at := range row {
			if i != j && (at <= 0 || at > limit) {
				t.Errorf("h%d→h%d: first arrival %v, want within (0, %v]", i+1, j+1, at, limit)
			}
		}
	}
	for i, at := range p.Started() {
		if at <= 0 {
			t.Errorf("h%d: no probe sent", i+1)
		}
	}
}
