package daemon

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/internal/config"
	"github.com/booture/booture/internal/waitfor"
	"github.com/booture/booture/mesh"
	"github.com/booture/booture/netcfg"
	"github.com/booture/booture/netcfg/fakenet"
)

// recorder is a fake applier that keeps every operation ever applied.
type recorder struct {
	*fakenet.Fake
	mu     sync.Mutex
	ops    []string
	states atomic.Int64 // State calls (WireGuard dumps)
}

func (r *recorder) State(ctx context.Context) (netcfg.State, error) {
	r.states.Add(1)
	return r.Fake.State(ctx)
}

func (r *recorder) Apply(ctx context.Context, cfg netcfg.Config) error {
	err := r.Fake.Apply(ctx, cfg)
	r.mu.Lock()
	r.ops = append(r.ops, r.Fake.LastOpLines()...)
	r.mu.Unlock()
	return err
}

// opsSince returns the operations applied since mark.
func (r *recorder) opsSince(mark int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ops[mark:]...)
}

func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ops)
}

// testDaemon is a daemon running in-process with a fake network and
// gossip on loopback.
type testDaemon struct {
	name   string
	d      *Daemon
	net    *recorder
	client *api.Client
	cancel context.CancelFunc
	done   chan error
	dir    string

	stopOnce sync.Once
}

func startDaemon(t *testing.T, name string, dir string, opts ...func(*config.Config)) *testDaemon {
	t.Helper()
	return startDaemonWith(t, name, dir, nil, opts...)
}

// startDaemonLog starts a daemon logging at debug level into w.
func startDaemonLog(t *testing.T, name string, w io.Writer) *testDaemon {
	t.Helper()
	return startDaemonWith(t, name, "", slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})).With("booture", name))
}

func startDaemonWith(t *testing.T, name string, dir string, log *slog.Logger, opts ...func(*config.Config)) *testDaemon {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	cfg := config.Default()
	cfg.Name = name
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Socket = filepath.Join(dir, "api.sock")
	cfg.Listen = netip.MustParseAddr("127.0.0.1")
	cfg.Advertise = config.Advertised{Host: name + ".example.org", Port: 51820} // members' endpoint; gossip uses Listen
	cfg.Interface = "bt-" + name
	cfg.Resync = time.Second
	for _, o := range opts {
		o(&cfg)
	}
	rec := &recorder{Fake: fakenet.New()}
	// Fakes have no data plane: peers complete their handshakes at once,
	// so that no booture peer is re-created for want of an answer
	// (TestSilentPeerRecreated turns it off).
	rec.SetHandshakeOnAdd(true)
	td := &testDaemon{name: name, net: rec, client: api.NewClient(cfg.Socket), done: make(chan error, 1), dir: dir}
	ready := make(chan *Daemon, 1)
	ctx, cancel := context.WithCancel(context.Background())
	td.cancel = cancel
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if os.Getenv("BOOTURE_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("booture", name)
	}
	go func() {
		td.done <- Run(ctx, Options{
			Config: cfg,
			Logger: log,
			NewApplier: func(*slog.Logger, config.Config) (netcfg.Applier, error) {
				return rec, nil
			},
			AnyGossipPort:  true,
			RejoinInterval: time.Second,
			DisableGateway: true,
			Ready:          func(d *Daemon) { ready <- d },
		})
	}()
	select {
	case td.d = <-ready:
	case err := <-td.done:
		t.Fatalf("daemon %s: %v", name, err)
	case <-time.After(20 * time.Second):
		t.Fatalf("daemon %s did not start", name)
	}
	t.Cleanup(td.stop)
	return td
}

func (td *testDaemon) stop() {
	td.stopOnce.Do(func() {
		td.cancel()
		select {
		case <-td.done:
		case <-time.After(20 * time.Second):
		}
	})
}

func (td *testDaemon) status(t *testing.T) api.Status {
	t.Helper()
	st, err := td.client.Status(context.Background())
	if err != nil {
		t.Fatalf("%s status: %v", td.name, err)
	}
	return st
}

func (td *testDaemon) join(t *testing.T, inviter *testDaemon) {
	t.Helper()
	inv, err := inviter.client.Invite(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := td.client.Join(context.Background(), inv.Token); err != nil {
		t.Fatalf("%s joins %s: %v", td.name, inviter.name, err)
	}
}

// peersIn reports whether the fake network of td has WireGuard peers for
// exactly the given bootures, with their sites routed.
func peersIn(td *testDaemon, others ...*testDaemon) bool {
	st, err := td.net.State(context.Background())
	if err != nil {
		return false
	}
	want := map[string]bool{}
	for _, o := range others {
		want[o.d.priv.Public().String()] = true
	}
	n := 0
	for _, p := range st.Peers {
		if want[p.PublicKey.String()] {
			n++
		}
	}
	return n == len(others) && len(st.Peers) == len(others)+td.d.memberCount()
}

func TestDaemonsFormMeshAndReconcileIncrementally(t *testing.T) {
	a := startDaemon(t, "a", "")
	b := startDaemon(t, "b", "")
	c := startDaemon(t, "c", "")
	b.join(t, a)
	c.join(t, b)
	waitfor.Cond(t, 20*time.Second, "3 bootures peered", func() bool {
		return peersIn(a, b, c) && peersIn(b, a, c) && peersIn(c, a, b)
	})

	st := a.status(t)
	if st.Name != "a" || st.MeshIPv4 != "10.77.1.1" || st.SiteIPv4 != "10.77.1.0/24" || st.WireGuard.Interface != "bt-a" || len(st.Peers) != 2 {
		t.Fatalf("status: %+v", st)
	}
	for _, p := range st.Peers {
		if p.State != "alive" || p.PublicKey == "" || p.MeshIPv4 == "" || p.Endpoint == "" {
			t.Fatalf("peer in status: %+v", p)
		}
	}
	fakeA := a.net.Fake.String()
	for _, want := range []string{"ip route add 10.77.2.0/24 dev bt-a", "ip route add 10.77.3.0/24 dev bt-a", "ip address add 10.77.1.1/24 dev bt-a"} {
		if !strings.Contains(fakeA, want) {
			t.Fatalf("a's network lacks %q:\n%s", want, fakeA)
		}
	}

	// A fourth booture joins: on a, only its peer and its routes are added.
	mark := a.net.mark()
	d := startDaemon(t, "d", "")
	d.join(t, c)
	waitfor.Cond(t, 20*time.Second, "d peered everywhere", func() bool {
		return peersIn(a, b, c, d) && peersIn(d, a, b, c)
	})
	dKey := d.d.priv.Public().String()
	for _, op := range a.net.opsSince(mark) {
		if strings.HasPrefix(op, "wg set") && !strings.Contains(op, dKey) {
			t.Errorf("a touched another peer when d joined: %s", op)
		}
		if strings.HasPrefix(op, "ip route") && !strings.Contains(op, "10.77.4.") && !strings.Contains(op, ":4::/64") {
			t.Errorf("a changed another route when d joined: %s", op)
		}
	}

	// d leaves gracefully: a drops its peer and routes at once.
	mark = a.net.mark()
	if err := d.client.Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitfor.Cond(t, 5*time.Second, "d's peer gone from a", func() bool { return peersIn(a, b, c) })
	if strings.Contains(a.net.Fake.String(), "10.77.4.0/24") {
		t.Fatal("route of a gone booture left behind")
	}
	for _, op := range a.net.opsSince(mark) {
		if strings.HasPrefix(op, "wg set") && !strings.Contains(op, dKey) {
			t.Errorf("a touched another peer when d left: %s", op)
		}
	}

	// Drift made by hand is repaired within the resync period.
	bKey := b.d.priv.Public()
	a.net.RemovePeer(bKey)
	a.net.DeleteRoute(netip.MustParsePrefix("10.77.2.0/24"))
	waitfor.Cond(t, 5*time.Second, "drift repaired", func() bool {
		return peersIn(a, b, c) && strings.Contains(a.net.Fake.String(), "ip route add 10.77.2.0/24 dev bt-a")
	})
}

func TestRestartKeepsIdentityAndMembers(t *testing.T) {
	dir := t.TempDir()
	a := startDaemon(t, "a", "")
	b := startDaemon(t, "b", dir)
	b.join(t, a)
	added, err := b.client.AddMember(context.Background(), api.MemberAddRequest{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	before := b.status(t)
	if !netip.MustParsePrefix(before.SiteIPv4).Contains(netip.MustParseAddr(added.Member.IPv4)) {
		t.Fatalf("member added at %s, outside b's site %s", added.Member.IPv4, before.SiteIPv4)
	}
	b.stop()
	b2 := startDaemon(t, "b", dir)
	after := b2.status(t)
	if after.PublicKey != before.PublicKey || after.MeshIPv4 != before.MeshIPv4 || after.MeshIPv6 != before.MeshIPv6 || after.MeshID != before.MeshID {
		t.Fatalf("identity changed across restart:\nbefore %+v\nafter  %+v", before, after)
	}
	m, err := b2.client.Member(context.Background(), "alice")
	if err != nil || m.IPv4 != added.Member.IPv4 || m.PublicKey != added.Member.PublicKey {
		t.Fatalf("member after restart: %+v %v", m, err)
	}
	waitfor.Cond(t, 20*time.Second, "peers re-converge", func() bool { return peersIn(a, b2) })
}

// Joining moves a booture to the site its inviter gave it: the join's answer
// comes once its members moved with it, and a member added right after gets
// an address of the new site, in its record and in its configuration.
func TestMembersFollowTheSiteOfAJoin(t *testing.T) {
	a := startDaemon(t, "a", "")
	b := startDaemon(t, "b", "")
	ctx := context.Background()
	early, err := b.client.AddMember(ctx, api.MemberAddRequest{Name: "early"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(early.Member.IPv4, "10.77.1.") {
		t.Fatalf("b founded site 1, its member got %s", early.Member.IPv4)
	}
	b.join(t, a)
	site := netip.MustParsePrefix(b.status(t).SiteIPv4)
	if site.Addr() == netip.MustParseAddr("10.77.1.0") {
		t.Fatalf("b kept site 1 after joining a")
	}
	m, err := b.client.Member(ctx, "early")
	if err != nil || !site.Contains(netip.MustParseAddr(m.IPv4)) {
		t.Fatalf("member added before the join is at %s after it, want in %s (%v)", m.IPv4, site, err)
	}
	late, err := b.client.AddMember(ctx, api.MemberAddRequest{Name: "late"})
	if err != nil {
		t.Fatal(err)
	}
	if !site.Contains(netip.MustParseAddr(late.Member.IPv4)) {
		t.Fatalf("member added right after the join got %s, want in %s", late.Member.IPv4, site)
	}
	if want := "Address = " + late.Member.IPv4 + "/32"; !strings.Contains(late.Config, want) {
		t.Fatalf("configuration lacks %q:\n%s", want, late.Config)
	}
}

func TestMembersThroughTheAPI(t *testing.T) {
	a := startDaemon(t, "a", "")
	ctx := context.Background()
	added, err := a.client.AddMember(ctx, api.MemberAddRequest{Name: "alice", QR: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"[Interface]", "PrivateKey = ", "Address = 10.77.1.2/32", "DNS = 10.77.1.1", "[Peer]",
		"PublicKey = " + a.status(t).PublicKey, "Endpoint = a.example.org:51820", "AllowedIPs = 10.77.0.0/16", "PersistentKeepalive = 25"} {
		if !strings.Contains(added.Config, want) {
			t.Fatalf("config lacks %q:\n%s", want, added.Config)
		}
	}
	if added.QR == "" {
		t.Fatal("no QR code")
	}
	key := added.Member.PublicKey
	waitfor.Cond(t, 5*time.Second, "member peer", func() bool { return strings.Contains(a.net.Fake.String(), key) })

	// The private key is stored nowhere.
	priv := strings.TrimSpace(strings.SplitN(strings.SplitN(added.Config, "PrivateKey = ", 2)[1], "\n", 2)[0])
	filepath.Walk(a.d.cfg.StateDir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			if strings.Contains(string(b), priv) {
				t.Errorf("the member's private key is stored in %s", p)
			}
		}
		return nil
	})

	full, err := a.client.AddMember(ctx, api.MemberAddRequest{Name: "bob", FullTunnel: true})
	if err != nil || !strings.Contains(full.Config, "AllowedIPs = 0.0.0.0/0, ::/0") {
		t.Fatalf("full tunnel: %v\n%s", err, full.Config)
	}

	// Disable cuts at once: the peer is gone when the call returns.
	if _, err := a.client.SetMemberEnabled(ctx, "alice", false); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(a.net.Fake.String(), key) {
		t.Fatal("a disabled member still has a WireGuard peer")
	}
	if _, err := a.client.SetMemberEnabled(ctx, "alice", true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(a.net.Fake.String(), key) {
		t.Fatal("an enabled member has no WireGuard peer")
	}
	ms, err := a.client.Members(ctx)
	if err != nil || len(ms) != 2 || ms[0].Name != "alice" || ms[0].State != "enabled" || ms[0].IPv4 != "10.77.1.2" {
		t.Fatalf("member list: %+v %v", ms, err)
	}

	// Bad input: one-line errors that say which.
	for _, tc := range []struct {
		req  api.MemberAddRequest
		want string
	}{
		{api.MemberAddRequest{Name: "alice"}, "already exists"},
		{api.MemberAddRequest{Name: "Bad Name"}, "invalid name"},
		{api.MemberAddRequest{Name: "carol", PublicKey: "nope"}, "not a base64 WireGuard public key"},
		{api.MemberAddRequest{Name: "carol", PublicKey: key}, "already in use"},
		{api.MemberAddRequest{Name: "carol", PublicKey: a.status(t).PublicKey}, "already in use by booture"},
	} {
		_, err := a.client.AddMember(ctx, tc.req)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("add %+v: got %v, want one line with %q", tc.req, err, tc.want)
		}
	}
	if err := a.client.RemoveMember(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.Member(ctx, "alice"); err == nil || !strings.Contains(err.Error(), "no such member") {
		t.Fatalf("removed member: %v", err)
	}
}

func TestAPIErrors(t *testing.T) {
	a := startDaemon(t, "a", "")
	ctx := context.Background()
	if _, err := a.client.Join(ctx, "booture-invite-garbage"); err == nil || !strings.Contains(err.Error(), "garbled") {
		t.Fatalf("garbled token: %v", err)
	}
	if _, err := a.client.Invite(ctx, "-1h"); err == nil || !strings.Contains(err.Error(), "positive duration") {
		t.Fatalf("bad expiry: %v", err)
	}
	if _, err := a.client.Expel(ctx, "nobody"); err == nil || !strings.Contains(err.Error(), "no such booture") {
		t.Fatalf("expel unknown: %v", err)
	}
	// The socket is not world-accessible.
	info, err := os.Stat(a.d.cfg.Socket)
	if err != nil || info.Mode().Perm()&0o007 != 0 {
		t.Fatalf("socket mode %v (%v)", info.Mode(), err)
	}
	// Key and state files are private.
	for _, f := range []string{KeyFile, mesh.StateFile} {
		info, err := os.Stat(filepath.Join(a.d.cfg.StateDir, f))
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v (%v)", f, info.Mode(), err)
		}
	}
	// A second daemon on the same socket refuses to start.
	err = Run(context.Background(), Options{Config: a.d.cfg})
	if err == nil || !strings.Contains(err.Error(), "already") {
		t.Fatalf("second daemon: %v", err)
	}
	_ = fmt.Sprint
}

// A stopped daemon leaves no goroutine behind (the daemon may be embedded
// and restarted, and a leak would be a resource leak on a small box).
func TestNoGoroutineLeak(t *testing.T) {
	before := goroutines()
	a := startDaemon(t, "a", "")
	b := startDaemon(t, "b", "")
	b.join(t, a)
	if _, err := a.client.AddMember(context.Background(), api.MemberAddRequest{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	a.stop()
	b.stop()
	// Idle HTTP client connections to the stopped sockets go away too.
	a.client.CloseIdle()
	b.client.CloseIdle()
	stopped := time.Now()
	waitfor.NoError(t, 15*time.Second, "the daemons' goroutines to end", func() error {
		var leaked []string
		for id, stack := range goroutines() {
			if _, ok := before[id]; !ok {
				leaked = append(leaked, stack)
			}
		}
		if len(leaked) > 0 {
			return fmt.Errorf("%d goroutines left:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
		return nil
	})
	t.Logf("no goroutine left %v after stopping", time.Since(stopped).Round(time.Millisecond))
}

// goroutines returns the stacks of the running goroutines by id.
func goroutines() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[string]string{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		id, _, _ := strings.Cut(g, " [")
		out[id] = g
	}
	return out
}

// The metrics endpoint serves the SPEC's metrics, opt-in.
func TestMetrics(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	a := startDaemon(t, "a", "", func(c *config.Config) { c.Metrics = netip.MustParseAddrPort(addr) })
	b := startDaemon(t, "b", "")
	b.join(t, a)
	if _, err := a.client.AddMember(context.Background(), api.MemberAddRequest{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	waitfor.Cond(t, 20*time.Second, "peered", func() bool { return peersIn(a, b) })
	var body string
	waitfor.Cond(t, 10*time.Second, "metrics", func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		bb, _ := io.ReadAll(resp.Body)
		body = string(bb)
		return strings.Contains(body, `booture_peers{state="alive"} 1`)
	})
	for _, want := range []string{
		`booture_peer_rx_bytes_total{kind="booture",peer="b"}`,
		`booture_peer_tx_bytes_total{kind="member",peer="alice"}`,
		"booture_reconcile_runs_total", "booture_reconcile_errors_total",
		`booture_gossip_bytes_total{direction="out"}`, "process_resident_memory_bytes",
		"booture_members 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, "/debug/pprof") {
		t.Error("profiles served without being asked for")
	}
}

// No secret ever reaches the logs: gossip key, private keys (the
// booture's and a member's), invitation tokens.
func TestNoSecretInLogs(t *testing.T) {
	var logs syncBuffer
	a := startDaemonLog(t, "a", &logs)
	b := startDaemonLog(t, "b", &logs)
	inv, err := a.client.Invite(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.Join(context.Background(), inv.Token); err != nil {
		t.Fatal(err)
	}
	added, err := a.client.AddMember(context.Background(), api.MemberAddRequest{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	c := startDaemonLog(t, "c", &logs)
	inv2, _ := b.client.Invite(context.Background(), "")
	if _, err := c.client.Join(context.Background(), inv2.Token); err != nil {
		t.Fatal(err)
	}
	waitfor.Cond(t, 20*time.Second, "peered", func() bool { return peersIn(a, b, c) })
	if _, err := a.client.Expel(context.Background(), "c"); err != nil {
		t.Fatal(err)
	}
	// The logs to check are those of the expulsion too: wait until it has
	// reached b (new gossip key, c's peer gone), so that they are written
	// and the gossip keys read below are the new ones.
	waitfor.Cond(t, 20*time.Second, "the expulsion to reach b", func() bool {
		epoch := a.d.Node().View().Epoch
		return epoch > 0 && b.d.Node().View().Epoch == epoch && peersIn(a, b) && peersIn(b, a)
	})

	secrets := map[string]string{"invitation": inv.Token, "second invitation": inv2.Token}
	for _, td := range []*testDaemon{a, b} {
		key, _ := os.ReadFile(filepath.Join(td.d.cfg.StateDir, KeyFile))
		secrets[td.name+"'s private key"] = strings.TrimSpace(string(key))
		var st struct {
			Credentials struct {
				Key []byte `json:"gossip_key"`
			} `json:"credentials"`
		}
		raw, _ := os.ReadFile(filepath.Join(td.d.cfg.StateDir, mesh.StateFile))
		if err := json.Unmarshal(raw, &st); err != nil || len(st.Credentials.Key) != 32 {
			t.Fatalf("reading %s's gossip key: %v", td.name, err)
		}
		secrets[td.name+"'s gossip key"] = base64.StdEncoding.EncodeToString(st.Credentials.Key)
	}
	for _, line := range strings.Split(added.Config, "\n") {
		if k, v, ok := strings.Cut(line, " = "); ok && k == "PrivateKey" {
			secrets["member's private key"] = v
		}
	}
	text := logs.String()
	if len(text) < 1000 {
		t.Fatalf("too few logs captured (%d bytes) for the check to mean anything", len(text))
	}
	for what, s := range secrets {
		if s == "" || len(s) < 20 {
			t.Fatalf("%s not found for the check", what)
		}
		if strings.Contains(text, s) || strings.Contains(text, s[:20]) {
			t.Errorf("the logs contain %s", what)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
