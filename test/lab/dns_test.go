package lab_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/booture/booture/internal/lab"
)

// dnsAsk sends a DNS query for name (A) from ns to server over UDP and
// returns the answer, or an error when none came within timeout.
func dnsAsk(ns *lab.NS, server netip.AddrPort, name string, timeout time.Duration) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	b, err := m.Pack()
	if err != nil {
		return nil, err
	}
	ans, err := ns.UDPExchange(server, string(b), timeout)
	if err != nil {
		return nil, err
	}
	r := new(dns.Msg)
	return r, r.Unpack([]byte(ans))
}

// TestDNSOnlyForTheMesh is a LAN host that routes the mesh pool through the
// booture's LAN address (Linux accepts packets for any of its addresses on
// any interface) and asks the booture's DNS server, on its mesh address,
// for the mesh's names: with its own address, then with a forged address
// of the mesh pool. It gets no answer. A member (through WireGuard) and the
// booture itself still resolve.
func TestDNSOnlyForTheMesh(t *testing.T) {
	t.Parallel()
	l := lab.New(t, lab.Options{Hosts: 2})
	h1, lan := l.H(1), l.H(2) // h2's daemon never runs: it is a plain LAN host
	h1.Args = []string{"--metrics", "127.0.0.1:9477"}
	must(t, h1.Start())
	st, err := h1.Status()
	must(t, err)
	mesh4 := netip.MustParseAddr(st.MeshIPv4)
	server := netip.AddrPortFrom(mesh4, 53)
	name := h1.Name + ".booture.internal"

	// The booture itself resolves (its queries come by loopback); this
	// also waits for the DNS server to be up.
	must(t, lab.Eventually(t.Context(), 20*time.Second, 200*time.Millisecond, func() error {
		_, err := dnsAsk(&h1.NS, server, name, time.Second)
		return err
	}))

	must(t, lan.NS.Run("ip", "route", "add", "10.77.0.0/16", "via", h1.IP.String()).Error())
	if r, err := dnsAsk(&lan.NS, server, name, 2*time.Second); err == nil {
		t.Errorf("a LAN host got an answer from the mesh address: %s %v", dns.RcodeToString[r.Rcode], r.Answer)
	}
	// A forged source of another (unallocated) site of the pool, as if a
	// member of another booture asked: recursion would be blind but real.
	forged := netip.MustParseAddr("10.77.250.7")
	must(t, lan.NS.Run("ip", "addr", "add", forged.String()+"/32", "dev", "eth0").Error())
	must(t, lan.NS.Run("ip", "route", "replace", server.Addr().String()+"/32", "via", h1.IP.String(), "src", forged.String()).Error())
	if r, err := dnsAsk(&lan.NS, server, name, 2*time.Second); err == nil {
		t.Errorf("a LAN host with a forged mesh source got an answer: %s %v", dns.RcodeToString[r.Rcode], r.Answer)
	}
	if r := h1.NS.Run("curl", "-sS", "--max-time", "5", "http://127.0.0.1:9477/metrics"); r.OK() {
		for _, line := range strings.Split(r.Stdout, "\n") {
			if strings.HasPrefix(line, "booture_gateway_dns_dropped_total") {
				t.Log(line)
			}
		}
	}

	// A member, through WireGuard and with the booture's DNS, resolves.
	alice, err := l.AddMember()
	must(t, err)
	must(t, alice.Up(memberAdd(t, h1, "alice")))
	var r lab.Result
	must(t, lab.Eventually(t.Context(), pingWait, 500*time.Millisecond, func() error {
		r = alice.NS.Run("getent", "ahostsv4", name)
		return r.Error()
	}))
	if !strings.Contains(r.Stdout, mesh4.String()) {
		t.Errorf("member resolving %s: %q", name, r.Stdout)
	}
}
