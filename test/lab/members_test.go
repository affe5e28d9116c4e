package lab_test

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/internal/lab"
)

// memberAdd runs `booture member add NAME ARGS...` on h and returns the
// configuration it printed.
func memberAdd(t *testing.T, h *lab.Host, name string, args ...string) string {
	t.Helper()
	r := h.CLI(append([]string{"member", "add", name}, args...)...)
	must(t, r.Error())
	return r.Stdout
}

// configLine returns the value of "Key = value" in a wg-quick config.
func configLine(cfg, key string) string {
	for _, l := range strings.Split(cfg, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// unreachable checks, in parallel, that from cannot ping any of dsts (two
// tries each).
func unreachable(t *testing.T, from *lab.NS, dsts ...string) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	for _, dst := range dsts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := from.Ping(dst, 2, 300*time.Millisecond)
			if err == nil && p.Received > 0 {
				mu.Lock()
				bad = append(bad, dst)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("%s reaches %v, it should not", from.Name, bad)
	}
}

// reachable checks that from pings each of dsts within timeout.
func reachable(t *testing.T, from *lab.NS, timeout time.Duration, dsts ...string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(dsts))
	for i, dst := range dsts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = from.WaitPing(dst, timeout)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func findMember(ms []api.Member, name string) (api.Member, bool) {
	for _, m := range ms {
		if m.Name == name {
			return m, true
		}
	}
	return api.Member{}, false
}

// addrOf returns the address of "a/32, b/128" Address lines, by family.
func addrOf(t *testing.T, cfg string) (v4, v6 string) {
	t.Helper()
	for _, f := range strings.Split(configLine(cfg, "Address"), ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(f))
		must(t, err)
		if p.Addr().Is4() {
			v4 = p.Addr().String()
		} else {
			v6 = p.Addr().String()
		}
	}
	if v4 == "" || v6 == "" {
		t.Fatalf("config without IPv4 and IPv6 addresses:\n%s", cfg)
	}
	return v4, v6
}

// Members over a real VPN: real wg-quick clients (userspace wireguard-go) of booture A
// (h1), brought up from exactly the configuration `member add` printed,
// reach A and B (h2) over IPv4 and IPv6; members cannot reach each other,
// nor B them;
// disable cuts a member off at once and enable lets it in again with the
// same configuration; --pubkey works; a --full-tunnel member reaches an
// "internet" host behind A and is seen there with A's address; member list
// --json reports each member.
func TestMembers(t *testing.T) {
	t.Parallel()
	l := startFounderFirst(t, lab.Options{Hosts: 2, Internet: true})
	a, b := l.H(1), l.H(2)
	must(t, b.JoinVia(a))
	must(t, lab.WaitMesh(15*time.Second, a, b))
	stA, stB := status(t, a), status(t, b)
	bootures := []string{stA.MeshIPv4, stA.MeshIPv6, stB.MeshIPv4, stB.MeshIPv6}

	// alice, split tunnel, on A.
	aliceCfg := memberAdd(t, a, "alice")
	for key, want := range map[string]string{
		"Endpoint":            a.IP.String() + ":51820",
		"AllowedIPs":          stA.MeshPool4 + ", " + stA.MeshPool6,
		"DNS":                 stA.MeshIPv4 + ", " + stA.MeshIPv6 + ", booture.internal", // the mesh domain as a search domain
		"PublicKey":           stA.PublicKey,
		"PersistentKeepalive": "25",
	} {
		if got := configLine(aliceCfg, key); got != want {
			t.Errorf("alice's config: %s = %q, want %q\n%s", key, got, want, aliceCfg)
		}
	}
	if configLine(aliceCfg, "PrivateKey") == "" {
		t.Errorf("alice's config has no PrivateKey:\n%s", aliceCfg)
	}
	alice4, alice6 := addrOf(t, aliceCfg)
	alice, err := l.AddMember()
	must(t, err)
	must(t, alice.Up(aliceCfg))
	t0 := time.Now()
	reachable(t, &alice.NS, pingWait, bootures...)
	t.Logf("alice (wg-quick) reaches A and B over IPv4 and IPv6 %v after wg-quick up", time.Since(t0).Round(time.Millisecond))
	if rc, _ := alice.ResolvConf(); !strings.Contains(rc, "nameserver "+stA.MeshIPv4) {
		t.Errorf("wg-quick did not set alice's resolver to A (%s): %q", stA.MeshIPv4, rc)
	}
	// B routes A's site through A, but cannot open connections to A's
	// members (A's filter lets only replies through to them).
	unreachable(t, &b.NS, alice4, alice6)

	// bob on A and carol on B: members do not reach each other.
	bob, err := l.AddMember()
	must(t, err)
	bobCfg := memberAdd(t, a, "bob")
	must(t, bob.Up(bobCfg))
	carol, err := l.AddMember()
	must(t, err)
	carolCfg := memberAdd(t, b, "carol")
	must(t, carol.Up(carolCfg))
	reachable(t, &bob.NS, pingWait, bootures...)
	reachable(t, &carol.NS, pingWait, bootures...)
	bob4, bob6 := addrOf(t, bobCfg)
	unreachable(t, &bob.NS, alice4, alice6)
	unreachable(t, &carol.NS, alice4, alice6)
	unreachable(t, &alice.NS, bob4, bob6)

	// member list --json.
	ms, err := a.MemberList()
	must(t, err)
	pub, err := alice.WG()
	must(t, err)
	if m, ok := findMember(ms, "alice"); !ok {
		t.Errorf("member list --json has no alice: %+v", ms)
	} else if m.IPv4 != alice4 || m.IPv6 != alice6 || m.State != "enabled" || m.FullTunnel ||
		m.PublicKey != pub.PublicKey || m.LastHandshake == nil || m.RxBytes == 0 || m.TxBytes == 0 || m.Created.IsZero() ||
		!strings.HasPrefix(m.Endpoint, alice.IP.String()+":") {
		t.Errorf("member list --json: alice is %+v; want %s, %s, enabled, split tunnel, key %s, a handshake, traffic, endpoint %s:PORT",
			m, alice4, alice6, pub.PublicKey, alice.IP)
	}
	if len(ms) != 2 {
		t.Errorf("A lists %d members, want 2 (alice, bob): %+v", len(ms), ms)
	}

	// disable cuts alice off at once; enable lets her in again with the
	// same configuration (her client stays as it is).
	must(t, a.CLI("member", "disable", "alice").Error())
	unreachable(t, &alice.NS, bootures...)
	ms, err = a.MemberList()
	must(t, err)
	if m, _ := findMember(ms, "alice"); m.State != "disabled" {
		t.Errorf("alice is %q after disable", m.State)
	}
	must(t, a.CLI("member", "enable", "alice").Error())
	t0 = time.Now()
	reachable(t, &alice.NS, 30*time.Second, bootures...)
	t.Logf("alice reaches the mesh again %v after enable", time.Since(t0).Round(time.Millisecond))

	// --pubkey: dave keeps his private key; the booture never sees it.
	priv, pubKey, err := lab.GenKey()
	must(t, err)
	daveCfg := memberAdd(t, a, "dave", "--pubkey", pubKey)
	if strings.Contains(daveCfg, priv) || configLine(daveCfg, "PrivateKey") != "" || !strings.Contains(daveCfg, pubKey) {
		t.Errorf("--pubkey config should have no private key, only a placeholder naming %s:\n%s", pubKey, daveCfg)
	}
	dave, err := l.AddMember()
	must(t, err)
	must(t, dave.Up(daveCfg))
	must(t, dave.SetPrivateKey(priv))
	reachable(t, &dave.NS, pingWait, bootures...)
	ms, err = a.MemberList()
	must(t, err)
	if m, _ := findMember(ms, "dave"); m.PublicKey != pubKey {
		t.Errorf("dave's public key is %q, want %q", m.PublicKey, pubKey)
	}

	// --full-tunnel: erin reaches the internet host behind A, which sees
	// A's uplink address (masquerade).
	erinCfg := memberAdd(t, a, "erin", "--full-tunnel")
	if got := configLine(erinCfg, "AllowedIPs"); got != "0.0.0.0/0, ::/0" {
		t.Errorf("full-tunnel AllowedIPs = %q, want 0.0.0.0/0, ::/0", got)
	}
	erin, err := l.AddMember()
	must(t, err)
	must(t, erin.Up(erinCfg))
	inet := l.Internet
	echo, err := inet.StartUDPEcho(netip.AddrPortFrom(inet.IP, 7777).String())
	must(t, err)
	l.OnClose(echo)
	reachable(t, &erin.NS, pingWait, stA.MeshIPv4, stB.MeshIPv4, inet.IP.String())
	src, err := erin.EchoSource(echo.Addr, 10*time.Second)
	if err != nil {
		t.Errorf("full-tunnel erin cannot reach the internet host: %v", err)
	} else if src.Addr() != inet.Gateway {
		t.Errorf("the internet host saw erin as %s, want A's uplink address %s (masquerade)", src, inet.Gateway)
	} else {
		t.Logf("full-tunnel erin seen on the internet as %s (A's uplink)", src)
	}
	// A split-tunnel member's other traffic does not go through A.
	unreachable(t, &alice.NS, inet.IP.String())
	if _, err := alice.UDPExchange(echo.Addr, "split", time.Second); err == nil {
		t.Errorf("split-tunnel alice reached the internet host")
	}
	ms, err = a.MemberList()
	must(t, err)
	if m, _ := findMember(ms, "erin"); !m.FullTunnel {
		t.Errorf("erin should be listed full_tunnel: %+v", m)
	}

	// remove cuts bob off for good.
	must(t, a.CLI("member", "remove", "bob").Error())
	unreachable(t, &bob.NS, stA.MeshIPv4, stB.MeshIPv4)
	ms, err = a.MemberList()
	must(t, err)
	if _, ok := findMember(ms, "bob"); ok {
		t.Errorf("bob still listed after remove")
	}
	names := []string{}
	for _, m := range ms {
		names = append(names, m.Name)
	}
	if fmt.Sprint(names) != "[alice dave erin]" {
		t.Errorf("A's members: %v, want [alice dave erin]", names)
	}

	// Members survive a crash of the daemon: after kill -9 and start, the
	// same clients, unchanged, reach the mesh (and the internet) again.
	must(t, a.Kill())
	must(t, a.Start())
	after, err := a.MemberList()
	must(t, err)
	for i, m := range after {
		if m.Name != ms[i].Name || m.IPv4 != ms[i].IPv4 || m.IPv6 != ms[i].IPv6 || m.PublicKey != ms[i].PublicKey || m.State != ms[i].State {
			t.Errorf("after kill -9 and start, member %+v became %+v", ms[i], m)
		}
	}
	t0 = time.Now()
	reachable(t, &alice.NS, 40*time.Second, bootures...)
	reachable(t, &erin.NS, 40*time.Second, inet.IP.String())
	t.Logf("after kill -9 and start of A, its members reach the mesh again within %v", time.Since(t0).Round(time.Millisecond))
}
