//go:build linux

package linuxnet_test

// Lab tests of the Linux implementation. They need root: each test makes
// its own network namespaces and runs the real implementation (userspace
// WireGuard) inside them. Go moves goroutines between OS threads, so no
// thread is switched to a namespace: the test binary re-executes itself
// under `ip netns exec NS` as an "agent" (see TestMain) that owns one
// linuxnet.Applier and obeys JSON commands on stdin.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/booture/booture/key"
	"github.com/booture/booture/netcfg"
	"github.com/booture/booture/netcfg/linuxnet"
)

const (
	agentEnv     = "NETCFG_TEST_AGENT"      // set: this process is an agent
	agentModeEnv = "NETCFG_TEST_AGENT_MODE" // wireguard mode of the agent
	agentListen  = "NETCFG_TEST_AGENT_LISTEN"
	cmdTimeout   = 60 * time.Second
)

func TestMain(m *testing.M) {
	if os.Getenv(agentEnv) != "" {
		os.Exit(runAgent())
	}
	os.Exit(m.Run())
}

type agentRequest struct {
	Cmd    string      `json:"cmd"` // apply, state, underlay, close
	Config *wireConfig `json:"config,omitempty"`
	Addr   netip.Addr  `json:"addr,omitzero"`
}

// wireConfig carries a netcfg.Config to the agent: a key.PrivateKey refuses
// to be marshalled, so the key travels as RevealBase64 text in a field that
// hides the Config's own (encoding/json follows Go's rules for embedded
// fields: the shallower PrivateKey wins).
type wireConfig struct {
	netcfg.Config
	PrivateKey string
}

func toWire(c netcfg.Config) *wireConfig {
	return &wireConfig{Config: c, PrivateKey: c.PrivateKey.RevealBase64()}
}

func (w *wireConfig) config() (netcfg.Config, error) {
	c := w.Config
	var err error
	c.PrivateKey, err = key.ParsePrivateKey(w.PrivateKey)
	return c, err
}

type agentResponse struct {
	Error string        `json:"error,omitempty"`
	Ops   []string      `json:"ops,omitempty"`
	State *netcfg.State `json:"state,omitempty"`
	MTU   int           `json:"mtu,omitempty"`
}

// runAgent serves commands until stdin closes, then closes the Applier.
func runAgent() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	opts := linuxnet.Options{Mode: netcfg.Mode(os.Getenv(agentModeEnv))}
	if s := os.Getenv(agentListen); s != "" {
		opts.Listen = netip.MustParseAddr(s)
	}
	l, err := linuxnet.New(log, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer l.Close()
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(nil, 1<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req agentRequest
		var resp agentResponse
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			resp.Error = err.Error()
		}
		switch req.Cmd {
		case "apply":
			var cfg netcfg.Config
			if cfg, err = req.Config.config(); err == nil {
				err = l.Apply(context.Background(), cfg)
			}
			for _, op := range l.LastOps() {
				resp.Ops = append(resp.Ops, op.String())
			}
		case "state":
			var st netcfg.State
			st, err = l.State(context.Background())
			resp.State = &st
		case "underlay":
			resp.MTU = linuxnet.UnderlayMTU(req.Addr)
		case "close":
			err = l.Close()
		}
		if err != nil {
			resp.Error = err.Error()
		}
		if err := out.Encode(resp); err != nil {
			return 1
		}
	}
	return 0
}

// needRoot skips the test unless it can build namespaces.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("lab test needs root (network namespaces, tun devices); run `go test ./netcfg/` as root to include it")
	}
	for _, bin := range []string{"ip", "wg", "nft", "ping"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("lab test needs %s (Debian: iproute2, wireguard-tools, nftables, iputils-ping)", bin)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("lab test needs /dev/net/tun")
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// run runs a command with a timeout and returns its combined output.
func run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// newNS creates a namespace with lo up, deleted when the test ends.
func newNS(t *testing.T, tag string) string {
	t.Helper()
	ns := "bt-test-" + randHex(3) + "-" + tag
	mustRun(t, "ip", "netns", "add", ns)
	t.Cleanup(func() {
		if out, err := run("ip", "netns", "del", ns); err != nil {
			t.Errorf("deleting namespace %s: %v %s", ns, err, out)
		}
	})
	mustRun(t, "ip", "-n", ns, "link", "set", "lo", "up")
	return ns
}

func inNS(ns string, args ...string) []string {
	return append([]string{"ip", "netns", "exec", ns}, args...)
}

// ifaceName is unique across namespaces: the UAPI socket directory is
// shared by all of them.
func ifaceName(t *testing.T) string {
	name := "btt" + randHex(4)
	t.Cleanup(func() { _ = os.Remove(linuxnet.UAPISocket(name)) })
	return name
}

type agent struct {
	t      *testing.T
	ns     string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan []byte
	stderr *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startAgent runs the test binary as an agent inside ns. Cleanup stops it
// (before the namespace is deleted, as cleanups run last-in first-out) and
// shows its log if the test failed.
func startAgent(t *testing.T, ns string, mode netcfg.Mode, listen string) *agent {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{t: t, ns: ns, lines: make(chan []byte, 16), stderr: &lockedBuffer{}}
	a.cmd = exec.Command("ip", "netns", "exec", ns, exe)
	a.cmd.Env = append(os.Environ(), agentEnv+"=1", agentModeEnv+"="+string(mode), agentListen+"="+listen)
	a.cmd.Stderr = a.stderr
	stdout, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if a.stdin, err = a.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(a.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			a.lines <- bytes.Clone(sc.Bytes())
		}
	}()
	t.Cleanup(func() {
		_ = a.stdin.Close() // the agent closes its Applier and exits
		done := make(chan error, 1)
		go func() { done <- a.cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(cmdTimeout):
			_ = a.cmd.Process.Kill()
			<-done
		}
		if t.Failed() || os.Getenv("NETCFG_TEST_AGENT_LOGS") != "" {
			t.Logf("agent in %s logged:\n%s", ns, a.stderr.String())
		}
	})
	return a
}

func (a *agent) call(req agentRequest) (agentResponse, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return agentResponse{}, err
	}
	if _, err := a.stdin.Write(append(b, '\n')); err != nil {
		return agentResponse{}, fmt.Errorf("writing to agent: %w", err)
	}
	select {
	case line, ok := <-a.lines:
		if !ok {
			return agentResponse{}, errors.New("agent exited")
		}
		var resp agentResponse
		if err := json.Unmarshal(line, &resp); err != nil {
			return resp, fmt.Errorf("agent answer %q: %w", line, err)
		}
		if resp.Error != "" {
			return resp, errors.New(resp.Error)
		}
		return resp, nil
	case <-time.After(cmdTimeout):
		return agentResponse{}, fmt.Errorf("agent did not answer %s within %v", req.Cmd, cmdTimeout)
	}
}

func (a *agent) apply(cfg netcfg.Config) []string {
	a.t.Helper()
	resp, err := a.call(agentRequest{Cmd: "apply", Config: toWire(cfg)})
	if err != nil {
		a.t.Fatalf("apply in %s: %v", a.ns, err)
	}
	return resp.Ops
}

func (a *agent) state() netcfg.State {
	a.t.Helper()
	resp, err := a.call(agentRequest{Cmd: "state"})
	if err != nil {
		a.t.Fatalf("state in %s: %v", a.ns, err)
	}
	return *resp.State
}

func (a *agent) close() {
	a.t.Helper()
	if _, err := a.call(agentRequest{Cmd: "close"}); err != nil {
		a.t.Fatalf("close in %s: %v", a.ns, err)
	}
}

func newKey(t *testing.T) key.PrivateKey {
	k, err := key.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pfxs(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, v := range s {
		out[i] = netip.MustParsePrefix(v)
	}
	return out
}

func peerOf(ps []netcfg.PeerState, k key.PublicKey) (netcfg.PeerState, bool) {
	for _, p := range ps {
		if p.PublicKey == k {
			return p, true
		}
	}
	return netcfg.PeerState{}, false
}

// wgDump parses `wg show IFACE dump` peers: public key -> fields
// (preshared-key, endpoint, allowed-ips, latest-handshake, rx, tx,
// keepalive). The first line (with the private key) is never kept.
func wgDump(t *testing.T, ns, iface string) map[string][]string {
	t.Helper()
	out := mustRun(t, inNS(ns, "wg", "show", iface, "dump")...)
	peers := map[string][]string{}
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(line, "\t")
		if i == 0 || len(f) != 8 {
			continue
		}
		peers[f[0]] = f[1:]
	}
	return peers
}

func sysctl(t *testing.T, ns, path string) string {
	t.Helper()
	return strings.TrimSpace(mustRun(t, inNS(ns, "cat", "/proc/sys/"+path)...))
}

func assertContains(t *testing.T, what, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, out)
		}
	}
}

// TestLinuxUserspace drives one interface through its life in one
// namespace: creation, wg/ip/nft state, an incremental change, drift
// repair and Close.
func TestLinuxUserspace(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "u")
	// Underlay: eth0 (MTU 1400) carries the default route; lan1 (MTU 1300)
	// holds another address. The veth peers stay in the namespace.
	mustRun(t, "ip", "-n", ns, "link", "add", "eth0", "mtu", "1400", "type", "veth", "peer", "name", "eth0p", "mtu", "1400")
	mustRun(t, "ip", "-n", ns, "link", "add", "lan1", "mtu", "1300", "type", "veth", "peer", "name", "lan1p", "mtu", "1300")
	for _, l := range []string{"eth0", "eth0p", "lan1", "lan1p"} {
		mustRun(t, "ip", "-n", ns, "link", "set", l, "up")
	}
	mustRun(t, "ip", "-n", ns, "address", "add", "198.51.100.1/24", "dev", "eth0")
	mustRun(t, "ip", "-n", ns, "address", "add", "203.0.113.1/24", "dev", "lan1")
	mustRun(t, "ip", "-n", ns, "route", "add", "default", "via", "198.51.100.254", "dev", "eth0")

	iface := ifaceName(t)
	a := startAgent(t, ns, netcfg.ModeUserspace, "")

	for addr, want := range map[string]int{"203.0.113.1": 1220, "198.51.100.1": 1320, "0.0.0.0": 1320, "192.0.2.99": 1320} {
		resp, err := a.call(agentRequest{Cmd: "underlay", Addr: netip.MustParseAddr(addr)})
		if err != nil || resp.MTU != want {
			t.Errorf("UnderlayMTU(%s) = %d, %v; want %d", addr, resp.MTU, err, want)
		}
	}
	if _, err := a.call(agentRequest{Cmd: "state"}); err == nil || !strings.Contains(err.Error(), netcfg.ErrNoInterface.Error()) {
		t.Errorf("State before Apply: %v, want ErrNoInterface", err)
	}

	k1, k2, k3 := newKey(t), newKey(t), newKey(t)
	p2, p3 := k2.Public(), k3.Public()
	cfg := netcfg.Config{
		Interface:  iface,
		PrivateKey: k1,
		ListenPort: 51820,
		Addresses:  pfxs("10.77.1.1/24", "fd00:77:1:1::1/64"),
		Peers: []netcfg.Peer{
			{PublicKey: p2, Endpoint: netip.MustParseAddrPort("198.51.100.2:51820"), AllowedIPs: pfxs("10.77.2.0/24", "fd00:77:1:2::/64"), PersistentKeepalive: 25 * time.Second},
			{PublicKey: p3, Endpoint: netip.MustParseAddrPort("198.51.100.3:51820"), AllowedIPs: pfxs("10.77.3.0/24")},
		},
		Routes:      pfxs("10.77.2.0/24", "fd00:77:1:2::/64", "10.77.3.0/24"),
		Unreachable: pfxs("10.77.0.0/16", "fd00:77:1::/48"),
		Firewall: netcfg.Firewall{
			Enabled:    true,
			MeshIPv4:   netip.MustParsePrefix("10.77.0.0/16"),
			MeshIPv6:   netip.MustParsePrefix("fd00:77:1::/48"),
			FullTunnel: []netip.Addr{netip.MustParseAddr("10.77.1.9")},
			TCPPorts:   []uint16{80, 53},
			UDPPorts:   []uint16{53},
		},
	}
	ops := a.apply(cfg)
	if len(ops) == 0 || ops[0] != "ip link add "+iface+" type wireguard" {
		t.Fatalf("first Apply did not create the link: %q", ops)
	}

	// WireGuard as wg(8) sees it, through the UAPI socket.
	dump := wgDump(t, ns, iface)
	if got := dump[p2.String()]; len(got) != 7 || got[1] != "198.51.100.2:51820" || got[2] != "10.77.2.0/24,fd00:77:1:2::/64" || got[6] != "25" {
		t.Errorf("wg dump of peer 2: %q", got)
	}
	if got := dump[p3.String()]; len(got) != 7 || got[1] != "198.51.100.3:51820" || got[2] != "10.77.3.0/24" || got[6] != "off" {
		t.Errorf("wg dump of peer 3: %q", got)
	}
	assertContains(t, "ip link", mustRun(t, "ip", "-n", ns, "link", "show", iface), "mtu 1320", ",UP")
	assertContains(t, "ip route", mustRun(t, "ip", "-n", ns, "route", "show", "dev", iface),
		"10.77.1.0/24 proto kernel", "10.77.2.0/24 scope link", "10.77.3.0/24 scope link")
	assertContains(t, "ip -6 route", mustRun(t, "ip", "-n", ns, "-6", "route", "show", "dev", iface), "fd00:77:1:2::/64")
	assertContains(t, "nft table", mustRun(t, "ip", "netns", "exec", ns, "nft", "list", "table", "inet", netcfg.FirewallTable),
		fmt.Sprintf(`iifname %q oifname %q ip saddr 10.77.0.0/16 ip saddr & 0.0.0.255 != 0.0.0.1 ip daddr 10.77.0.0/16 ip daddr & 0.0.0.255 != 0.0.0.1 counter packets 0 bytes 0 drop`, iface, iface),
		`ip6 daddr & ::ffff:ffff:ffff:ffff != ::1`,
		fmt.Sprintf(`iifname %q oifname "eth0" ip saddr @fulltunnel4 accept`, iface),
		fmt.Sprintf(`iifname %q counter packets 0 bytes 0 drop`, iface),
		`oifname "eth0" ip saddr @fulltunnel4 masquerade`,
		"10.77.1.9")
	// The table the kernel holds is, rule by rule, what the description
	// says (and the fake prints).
	checkTable(t, ns, netcfg.ResolveFirewall(cfg, "eth0"))
	for _, fam := range []string{"-4", "-6"} {
		assertContains(t, "ip "+fam+" route", mustRun(t, "ip", "-n", ns, fam, "route", "show", "type", "unreachable"),
			map[string]string{"-4": "unreachable 10.77.0.0/16", "-6": "unreachable fd00:77:1::/48"}[fam]+" ", "metric 4000000000")
	}
	for path, want := range map[string]string{
		"net/ipv4/conf/" + iface + "/forwarding":       "1",
		"net/ipv4/conf/eth0/forwarding":                "1", // full tunnel replies
		"net/ipv4/conf/lan1/forwarding":                "0",
		"net/ipv4/ip_forward":                          "0",
		"net/ipv6/conf/" + iface + "/force_forwarding": "1",
		"net/ipv6/conf/all/forwarding":                 "0",
	} {
		if strings.Contains(path, "force_forwarding") {
			if _, err := run(inNS(ns, "test", "-e", "/proc/sys/"+path)...); err != nil {
				continue // kernel older than 6.17
			}
		}
		if got := sysctl(t, ns, path); got != want {
			t.Errorf("%s = %s, want %s", path, got, want)
		}
	}
	st := a.state()
	if st.Mode != netcfg.ModeUserspace || st.ListenPort != 51820 || st.MTU != 1320 || len(st.Peers) != 2 || st.PublicKey != k1.Public() {
		t.Errorf("state: %+v", st)
	}

	if ops := a.apply(cfg); len(ops) != 0 {
		t.Errorf("second Apply of the same config changed: %q", ops)
	}

	// One peer changes: only it and its route are touched.
	cfg.Peers[1].AllowedIPs = pfxs("10.77.3.0/24", "10.77.33.0/24")
	cfg.Routes = append(cfg.Routes, netip.MustParsePrefix("10.77.33.0/24"))
	ops = a.apply(cfg)
	want := []string{
		fmt.Sprintf("wg set %s peer %s allowed-ips 10.77.3.0/24,10.77.33.0/24", iface, p3),
		fmt.Sprintf("ip route add 10.77.33.0/24 dev %s", iface),
	}
	if strings.Join(ops, "\n") != strings.Join(want, "\n") {
		t.Errorf("ops of a one-peer change:\n%s\nwant:\n%s", strings.Join(ops, "\n"), strings.Join(want, "\n"))
	}
	if got := wgDump(t, ns, iface)[p2.String()]; got[1] != "198.51.100.2:51820" || got[6] != "25" {
		t.Errorf("untouched peer changed: %q", got)
	}

	// A peer to reset is removed and added again, whole, in one
	// configuration (WireGuard starts its handshake state afresh); the
	// next Apply, without Reset, changes nothing.
	cfg.Peers[0].Reset = true
	ops = a.apply(cfg)
	want = []string{
		fmt.Sprintf("wg set %s peer %s remove", iface, p2),
		fmt.Sprintf("wg set %s peer %s endpoint 198.51.100.2:51820 allowed-ips 10.77.2.0/24,fd00:77:1:2::/64 persistent-keepalive 25", iface, p2),
	}
	if strings.Join(ops, "\n") != strings.Join(want, "\n") {
		t.Errorf("ops of a reset:\n%s\nwant:\n%s", strings.Join(ops, "\n"), strings.Join(want, "\n"))
	}
	if got := wgDump(t, ns, iface)[p2.String()]; len(got) != 7 || got[1] != "198.51.100.2:51820" || got[2] != "10.77.2.0/24,fd00:77:1:2::/64" || got[6] != "25" {
		t.Errorf("wg dump of the reset peer: %q", got)
	}
	cfg.Peers[0].Reset = false
	if ops := a.apply(cfg); len(ops) != 0 {
		t.Errorf("Apply after the reset changed: %q", ops)
	}

	// Drift made by hand is repaired, and only it.
	mustRun(t, "ip", "-n", ns, "route", "del", "10.77.2.0/24", "dev", iface)
	mustRun(t, "ip", "-n", ns, "route", "add", "192.0.2.0/24", "dev", iface)
	if ops := a.apply(cfg); strings.Join(ops, "\n") != fmt.Sprintf("ip route del 192.0.2.0/24 dev %s\nip route add 10.77.2.0/24 dev %s", iface, iface) {
		t.Errorf("route repair ops: %q", ops)
	}
	routes := mustRun(t, "ip", "-n", ns, "route", "show", "dev", iface)
	assertContains(t, "ip route after repair", routes, "10.77.2.0/24")
	if strings.Contains(routes, "192.0.2.0/24") {
		t.Errorf("stray route survived the repair:\n%s", routes)
	}

	mustRun(t, inNS(ns, "wg", "set", iface, "peer", p2.String(), "remove")...)
	mustRun(t, inNS(ns, "nft", "delete", "table", "inet", netcfg.FirewallTable)...)
	mustRun(t, "ip", "-n", ns, "route", "del", "unreachable", "10.77.0.0/16", "metric", "4000000000")
	ops = a.apply(cfg)
	if len(ops) != 3 || !strings.HasPrefix(ops[0], "nft replace table inet booture (1 sets, ") ||
		ops[1] != "ip route add unreachable 10.77.0.0/16 metric 4000000000" ||
		!strings.HasPrefix(ops[2], "wg set "+iface+" peer "+p2.String()+" endpoint") {
		t.Errorf("peer, table and unreachable route repair ops: %q", ops)
	}
	if _, ok := wgDump(t, ns, iface)[p2.String()]; !ok {
		t.Error("removed peer not restored")
	}
	mustRun(t, "ip", "netns", "exec", ns, "nft", "list", "table", "inet", netcfg.FirewallTable)

	// A control socket deleted by hand is re-opened, so wg(8) and wgctrl
	// keep working.
	if err := os.Remove(linuxnet.UAPISocket(iface)); err != nil {
		t.Fatal(err)
	}
	if ops := a.apply(cfg); len(ops) != 0 {
		t.Errorf("ops after re-opening the socket: %q", ops)
	}
	if len(wgDump(t, ns, iface)) != 2 {
		t.Error("wg show does not work after the socket was re-opened")
	}

	// A deleted interface is re-created whole.
	mustRun(t, "ip", "-n", ns, "link", "del", iface)
	a.apply(cfg)
	if len(wgDump(t, ns, iface)) != 2 {
		t.Error("peers not restored after the interface was deleted")
	}
	assertContains(t, "ip route after re-creation", mustRun(t, "ip", "-n", ns, "route", "show", "dev", iface), "10.77.2.0/24", "10.77.33.0/24")

	// Close leaves nothing behind and puts forwarding back.
	a.close()
	assertGone(t, ns, iface)
	if got := sysctl(t, ns, "net/ipv4/conf/eth0/forwarding"); got != "0" {
		t.Errorf("uplink forwarding after Close = %s, want 0", got)
	}
}

// checkTable compares the namespace's nftables table, chain by chain and
// rule by rule, with the description fs (counters left out).
func checkTable(t *testing.T, ns string, fs netcfg.FirewallState) {
	t.Helper()
	var want []string
	for _, c := range fs.Chains() {
		want = append(want, fmt.Sprintf("chain %s: type %s hook %s priority %s; policy accept;", c.Name, c.Type, c.Hook, priorityWord(c.Priority)))
		for _, r := range fs.Rules() {
			if r.Chain == c.Name {
				want = append(want, c.Name+": "+r.String())
			}
		}
	}
	out := mustRun(t, inNS(ns, "nft", "list", "table", "inet", netcfg.FirewallTable)...)
	var got []string
	chain := ""
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "chain "):
			chain = strings.TrimSuffix(strings.TrimPrefix(line, "chain "), " {")
		case line == "}":
			chain = ""
		case chain != "" && strings.HasPrefix(line, "type "):
			got = append(got, "chain "+chain+": "+line)
		case chain != "" && line != "":
			got = append(got, chain+": "+countersRE.ReplaceAllString(line, "counter"))
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("nft list table:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

var countersRE = regexp.MustCompile(`counter packets \d+ bytes \d+`)

func priorityWord(p int) string {
	switch p {
	case netcfg.PriorityRaw:
		return "raw"
	case netcfg.PriorityFilter:
		return "filter"
	case netcfg.PrioritySrcNAT:
		return "srcnat"
	}
	return strconv.Itoa(p)
}

func assertGone(t *testing.T, ns, iface string) {
	t.Helper()
	if out, err := run("ip", "-n", ns, "link", "show", iface); err == nil {
		t.Errorf("interface still there after Close:\n%s", out)
	}
	if _, err := os.Stat(linuxnet.UAPISocket(iface)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("uapi socket still there after Close: %v", err)
	}
	if out := mustRun(t, inNS(ns, "nft", "list", "tables")...); strings.Contains(out, netcfg.FirewallTable) {
		t.Errorf("nftables table still there after Close:\n%s", out)
	}
	if out := mustRun(t, "ip", "-n", ns, "route", "show", "table", "all"); strings.Contains(out, "10.77.") {
		t.Errorf("mesh routes still there after Close:\n%s", out)
	}
	if out := mustRun(t, "ip", "-n", ns, "-6", "route", "show", "table", "all"); strings.Contains(out, "fd00:77:1:") {
		t.Errorf("mesh IPv6 routes still there after Close:\n%s", out)
	}
}

// TestLinuxModes checks that auto picks the kernel where it has WireGuard
// and falls back to userspace otherwise (wg(8) works on either), and that
// kernel mode fails clearly without the module.
func TestLinuxModes(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "a")
	probe := "btp" + randHex(4)
	kernel := true
	if _, err := run("ip", "-n", ns, "link", "add", probe, "type", "wireguard"); err != nil {
		kernel = false
	}
	if kernel {
		mustRun(t, "ip", "-n", ns, "link", "del", probe)
	}
	iface := ifaceName(t)
	cfg := netcfg.Config{Interface: iface, PrivateKey: newKey(t), ListenPort: 51820, Addresses: pfxs("10.77.5.1/24")}

	if !kernel {
		k := startAgent(t, ns, netcfg.ModeKernel, "")
		if _, err := k.call(agentRequest{Cmd: "apply", Config: toWire(cfg)}); err == nil || !strings.Contains(err.Error(), "creating kernel wireguard interface") {
			t.Errorf("kernel mode without the module: %v", err)
		}
		k.close()
	}

	a := startAgent(t, ns, netcfg.ModeAuto, "")
	a.apply(cfg)
	st := a.state()
	if want := map[bool]netcfg.Mode{true: netcfg.ModeKernel, false: netcfg.ModeUserspace}[kernel]; st.Mode != want {
		t.Errorf("mode %s, want %s (kernel wireguard available: %t)", st.Mode, want, kernel)
	}
	assertContains(t, "wg show", mustRun(t, inNS(ns, "wg", "show", iface)...), "listening port: 51820")
	a.close()
	assertGone(t, ns, iface)
}

// TestLinuxForeignLink checks that a link that is not the daemon's, but has
// the configured name, is refused and survives Close, and that a table
// left by an earlier run is removed when the firewall is off.
func TestLinuxForeignLink(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "f")
	iface := ifaceName(t)
	mustRun(t, "ip", "-n", ns, "link", "add", iface, "type", "veth", "peer", "name", "other0")
	a := startAgent(t, ns, netcfg.ModeAuto, "")
	cfg := netcfg.Config{Interface: iface, PrivateKey: newKey(t), ListenPort: 51820}
	if _, err := a.call(agentRequest{Cmd: "apply", Config: toWire(cfg)}); err == nil || !strings.Contains(err.Error(), "not a wireguard interface") {
		t.Errorf("Apply on a foreign link: %v", err)
	}
	a.close()
	mustRun(t, "ip", "-n", ns, "link", "show", iface) // still there

	mustRun(t, "ip", "-n", ns, "link", "del", iface)
	mustRun(t, inNS(ns, "nft", "add", "table", "inet", netcfg.FirewallTable)...)
	b := startAgent(t, ns, netcfg.ModeUserspace, "")
	ops := b.apply(cfg)
	if !slices.Contains(ops, "nft delete table inet "+netcfg.FirewallTable) {
		t.Errorf("left-over table not deleted: %q", ops)
	}
	b.close()
	assertGone(t, ns, iface)
}

// lab is three bootures in namespaces h1..h3 on one LAN (a bridge in its
// own namespace): h1 is the hub, h2 and h3 reach each other's sites
// through it. Each also holds a "member" address (host part 7 or 9) on its
// WireGuard interface.
type lab struct {
	ns     [4]string // index 1..3
	iface  [4]string
	key    [4]key.PrivateKey
	agent  [4]*agent
	config [4]netcfg.Config
}

func newLab(t *testing.T) *lab {
	l := &lab{}
	sw := newNS(t, "sw")
	mustRun(t, "ip", "-n", sw, "link", "add", "br0", "type", "bridge")
	mustRun(t, "ip", "-n", sw, "link", "set", "br0", "up")
	for i := 1; i <= 3; i++ {
		ns := newNS(t, "h"+strconv.Itoa(i))
		l.ns[i] = ns
		mustRun(t, "ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", "p"+strconv.Itoa(i), "netns", sw)
		mustRun(t, "ip", "-n", sw, "link", "set", "p"+strconv.Itoa(i), "master", "br0", "up")
		mustRun(t, "ip", "-n", ns, "address", "add", fmt.Sprintf("198.51.100.%d/24", i), "dev", "eth0")
		mustRun(t, "ip", "-n", ns, "link", "set", "eth0", "up")
		l.iface[i] = ifaceName(t)
		l.key[i] = newKey(t)
	}
	for i := 1; i <= 3; i++ {
		l.agent[i] = startAgent(t, l.ns[i], netcfg.ModeUserspace, fmt.Sprintf("198.51.100.%d", i))
	}
	pools := netcfg.Firewall{Enabled: true, MeshIPv4: netip.MustParsePrefix("10.77.0.0/16"), MeshIPv6: netip.MustParsePrefix("fd00:77:1::/48")}
	hubPeer := func(i int) netcfg.Peer {
		return netcfg.Peer{
			PublicKey:           l.key[i].Public(),
			Endpoint:            netip.MustParseAddrPort(fmt.Sprintf("198.51.100.%d:51820", i)),
			AllowedIPs:          pfxs(fmt.Sprintf("10.77.%d.0/24", i), fmt.Sprintf("fd00:77:1:%d::/64", i)),
			PersistentKeepalive: 25 * time.Second,
		}
	}
	l.config[1] = netcfg.Config{
		Interface: l.iface[1], PrivateKey: l.key[1], ListenPort: 51820,
		Addresses: pfxs("10.77.1.1/24", "fd00:77:1:1::1/64"),
		Peers:     []netcfg.Peer{hubPeer(2), hubPeer(3)},
		Routes:    pfxs("10.77.2.0/24", "fd00:77:1:2::/64", "10.77.3.0/24", "fd00:77:1:3::/64"),
		Firewall:  pools,
	}
	for _, i := range []int{2, 3} {
		member := map[int]string{2: "7", 3: "9"}[i]
		l.config[i] = netcfg.Config{
			Interface: l.iface[i], PrivateKey: l.key[i], ListenPort: 51820,
			Addresses: pfxs(fmt.Sprintf("10.77.%d.1/24", i), fmt.Sprintf("10.77.%d.%s/32", i, member),
				fmt.Sprintf("fd00:77:1:%d::1/64", i), fmt.Sprintf("fd00:77:1:%d::%s/128", i, member)),
			Peers: []netcfg.Peer{{
				PublicKey:  l.key[1].Public(),
				Endpoint:   netip.MustParseAddrPort("198.51.100.1:51820"),
				AllowedIPs: pfxs("10.77.0.0/16", "fd00:77:1::/48"),
			}},
			Routes:   pfxs("10.77.0.0/16", "fd00:77:1::/48"),
			Firewall: pools,
		}
	}
	for i := 1; i <= 3; i++ {
		l.agent[i].apply(l.config[i])
	}
	return l
}

// ping sends one echo request from src in namespace ns, trying a few
// times while handshakes complete; it reports whether a reply came.
func ping(ns, src, dst string, tries int) bool {
	for range tries {
		if _, err := run(inNS(ns, "ping", "-n", "-q", "-c", "1", "-W", "2", "-I", src, dst)...); err == nil {
			return true
		}
	}
	return false
}

var counterRE = regexp.MustCompile(`counter packets (\d+) bytes \d+ drop`)

// memberDrops returns the packet counters of the member-to-member drop
// rules of the namespace's table.
func memberDrops(t *testing.T, ns string) int {
	return forwardDrops(t, ns, "saddr & 0.0.0.255 != 0.0.0.1", "saddr & ::ffff:ffff:ffff:ffff != ::1")
}

// bootureToMemberDrops returns the packet counters of the rules that drop
// what a booture sends a member through the namespace.
func bootureToMemberDrops(t *testing.T, ns string) int {
	return forwardDrops(t, ns, "saddr & 0.0.0.255 == 0.0.0.1", "saddr & ::ffff:ffff:ffff:ffff == ::1")
}

// forwardDrops adds up the counters of the forward chain's drop rules
// that contain one of match.
func forwardDrops(t *testing.T, ns string, match ...string) int {
	t.Helper()
	out := mustRun(t, inNS(ns, "nft", "list", "chain", "inet", netcfg.FirewallTable, netcfg.ChainForward)...)
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if !slices.ContainsFunc(match, func(m string) bool { return strings.Contains(line, m) }) {
			continue
		}
		if m := counterRE.FindStringSubmatch(line); m != nil {
			c, _ := strconv.Atoi(m[1])
			n += c
		}
	}
	return n
}

// TestLinuxMeshForwarding runs real WireGuard between three namespaces and
// checks forwarding through the hub, member isolation in both families, that
// a booture cannot open connections to another booture's members, and that
// an unrelated peer change leaves a live session alone.
func TestLinuxMeshForwarding(t *testing.T) {
	needRoot(t)
	l := newLab(t)
	h1, h2 := l.ns[1], l.ns[2]

	// Booture to booture, and a member to a booture behind another booture
	// (forwarded by h1 with only per-interface forwarding on), and the
	// replies.
	for _, c := range [][2]string{{"10.77.2.1", "10.77.1.1"}, {"10.77.2.1", "10.77.3.1"}, {"10.77.2.7", "10.77.3.1"}, {"fd00:77:1:2::7", "fd00:77:1:3::1"}} {
		if !ping(h2, c[0], c[1], 15) {
			t.Fatalf("no ping %s -> %s through the mesh", c[0], c[1])
		}
	}
	if got := sysctl(t, h1, "net/ipv4/ip_forward"); got != "0" {
		t.Errorf("global ip_forward = %s on the hub, want 0 (per-interface only)", got)
	}

	// A booture opening a connection to a member behind another booture is
	// dropped by the hub's filter, in both families.
	before := bootureToMemberDrops(t, h1)
	if ping(h2, "10.77.2.1", "10.77.3.9", 2) || ping(h2, "fd00:77:1:2::1", "fd00:77:1:3::9", 2) {
		t.Fatal("a booture reached a member through the hub")
	}
	if after := bootureToMemberDrops(t, h1); after < before+2 {
		t.Errorf("booture-to-member drop counters went from %d to %d, want at least 2 more", before, after)
	}

	// Member to member is dropped by the hub's filter, in both families.
	before = memberDrops(t, h1)
	if ping(h2, "10.77.2.7", "10.77.3.9", 2) || ping(h2, "fd00:77:1:2::7", "fd00:77:1:3::9", 2) {
		t.Fatal("member reached another member through the hub")
	}
	if after := memberDrops(t, h1); after < before+2 {
		t.Errorf("member-to-member drop counters went from %d to %d, want at least 2 more", before, after)
	}

	// Allowed by the admin: the filter is rebuilt and members get through.
	l.config[1].Firewall.AllowMemberToMember = true
	if ops := l.agent[1].apply(l.config[1]); len(ops) != 1 || !strings.HasPrefix(ops[0], "nft replace") {
		t.Errorf("allowing member to member: ops %q, want one table rebuild", ops)
	}
	if !ping(h2, "10.77.2.7", "10.77.3.9", 5) || !ping(h2, "fd00:77:1:2::7", "fd00:77:1:3::9", 5) {
		t.Error("members cannot reach each other though allowed")
	}

	// An unrelated peer change on the hub must not reset h2's session.
	st := l.agent[1].state()
	p2 := l.key[2].Public()
	old, ok := peerOf(st.Peers, p2)
	if !ok || old.LastHandshake.IsZero() {
		t.Fatalf("hub has no handshake with h2: %+v", old)
	}
	k4 := newKey(t).Public()
	l.config[1].Peers = append(l.config[1].Peers, netcfg.Peer{PublicKey: k4, Endpoint: netip.MustParseAddrPort("198.51.100.4:51820"), AllowedIPs: pfxs("10.77.4.0/24")})
	l.config[1].Routes = append(l.config[1].Routes, netip.MustParsePrefix("10.77.4.0/24"))
	l.config[1].Peers[1].PersistentKeepalive = 15 * time.Second // h3, not h2
	ops := l.agent[1].apply(l.config[1])
	for _, op := range ops {
		if strings.Contains(op, p2.String()) {
			t.Errorf("unrelated change touched h2's peer: %s", op)
		}
	}
	if len(ops) != 3 {
		t.Errorf("ops %q, want h3 update, h4 add and its route", ops)
	}
	if !ping(h2, "10.77.2.1", "10.77.1.1", 3) {
		t.Fatal("ping through h2's session stopped working after an unrelated change")
	}
	cur, _ := peerOf(l.agent[1].state().Peers, p2)
	if cur.RxBytes < old.RxBytes || cur.TxBytes < old.TxBytes {
		t.Errorf("h2's transfer counters went back (%d/%d -> %d/%d): the peer was re-created", old.RxBytes, old.TxBytes, cur.RxBytes, cur.TxBytes)
	}
	// WireGuard re-keys every 2 minutes of traffic; only a sooner new
	// handshake means the session was reset.
	if !cur.LastHandshake.Equal(old.LastHandshake) && cur.LastHandshake.Sub(old.LastHandshake) < 110*time.Second {
		t.Errorf("h2's handshake changed from %v to %v: the session was reset", old.LastHandshake, cur.LastHandshake)
	}
	if cur.Endpoint != old.Endpoint {
		t.Errorf("h2's endpoint changed from %v to %v", old.Endpoint, cur.Endpoint)
	}

	for i := 1; i <= 3; i++ {
		l.agent[i].close()
		assertGone(t, l.ns[i], l.iface[i])
	}
}
