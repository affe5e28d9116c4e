package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/booture/booture/internal/waitfor"
	"github.com/booture/booture/key"
)

// testNode is one in-process booture over loopback.
type testNode struct {
	*Node
	dir  string
	priv key.PrivateKey
	t    testing.TB
}

var loopback = netip.MustParseAddr("127.0.0.1")

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("BOOTURE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("t", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// startTestNode starts a node named name with state in dir (created if
// empty) and key priv (generated if zero).
func startTestNode(t testing.TB, name, dir string, priv key.PrivateKey, opts ...func(*Config)) *testNode {
	t.Helper()
	return startTunedNode(t, name, dir, priv, nil, opts...)
}

// startTunedNode is startTestNode with memberlist's configuration adjusted
// by tune.
func startTunedNode(t testing.TB, name, dir string, priv key.PrivateKey, tune func(*memberlist.Config), opts ...func(*Config)) *testNode {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	if priv.IsZero() {
		var err error
		if priv, err = key.NewPrivateKey(); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{
		Name: name, StateDir: dir, PrivateKey: priv, Bind: loopback, Advertise: loopback,
		WireGuardEndpoint: netip.AddrPortFrom(loopback, 51820), Version: "test",
		Logger: testLogger(t).With("node", name), RejoinInterval: time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("new node %s: %v", name, err)
	}
	n.tuneGossip = tune
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("start node %s: %v", name, err)
	}
	tn := &testNode{Node: n, dir: dir, priv: priv, t: t}
	t.Cleanup(func() { n.Close() })
	return tn
}

// joinVia has n join the mesh of inviter with a fresh invitation.
func (n *testNode) joinVia(inviter *testNode) JoinResult {
	n.t.Helper()
	inv, err := inviter.Invite(time.Hour)
	if err != nil {
		n.t.Fatalf("invite: %v", err)
	}
	res, err := n.Join(context.Background(), inv.Token)
	if err != nil {
		n.t.Fatalf("%s joins via %s: %v", n.View().Self.Name, inviter.View().Self.Name, err)
	}
	return res
}

// alivePeers returns the names of the peers n sees alive.
func alivePeers(n *Node) map[string]bool {
	out := make(map[string]bool)
	for _, p := range n.View().Peers {
		if p.State == StateAlive {
			out[p.Name] = true
		}
	}
	return out
}

// converged reports whether every node sees every other alive, in one mesh.
func converged(nodes []*testNode) bool {
	id := nodes[0].View().MeshID
	for _, n := range nodes {
		v := n.View()
		if v.MeshID != id {
			return false
		}
		alive := alivePeers(n.Node)
		for _, o := range nodes {
			if o != n && !alive[o.View().Self.Name] {
				return false
			}
		}
	}
	return true
}

// distinctSites checks that no two nodes hold the same site.
func distinctSites(t testing.TB, nodes []*testNode) {
	t.Helper()
	seen := map[int]string{}
	for _, n := range nodes {
		v := n.View()
		if other, ok := seen[v.Site.Number]; ok {
			t.Fatalf("%s and %s both hold site %d", other, v.Self.Name, v.Site.Number)
		}
		seen[v.Site.Number] = v.Self.Name
	}
}

// startCluster starts count nodes, each joining via the previous one.
func startCluster(t testing.TB, count int) []*testNode {
	t.Helper()
	nodes := make([]*testNode, count)
	for i := range nodes {
		nodes[i] = startTestNode(t, fmt.Sprintf("b%d", i+1), "", key.PrivateKey{})
		if i > 0 {
			nodes[i].joinVia(nodes[i-1])
		}
	}
	waitfor.Cond(t, 30*time.Second, "convergence", func() bool { return converged(nodes) })
	return nodes
}

func TestFoundJoinConverge(t *testing.T) {
	nodes := startCluster(t, 4)
	distinctSites(t, nodes)
	// Sites are handed out from 1 up.
	for i, n := range nodes {
		if got := n.View().Site.Number; got != i+1 {
			t.Errorf("%s holds site %d, want %d", n.View().Self.Name, got, i+1)
		}
	}
	// Every booture knows every other's key and WireGuard endpoint.
	v := nodes[0].View()
	for _, o := range nodes[1:] {
		p, ok := v.Peer(o.View().Self.Name)
		if !ok || p.PublicKey != o.PublicKey() || p.Endpoint != netip.AddrPortFrom(loopback, 51820) {
			t.Errorf("b1's record of %s = %+v", o.View().Self.Name, p)
		}
	}
}

// TestJoinRetryAfterLostAnswer: the inviter admits a booture whose join
// answer never arrives (a timeout on a loaded link); the same booture asking
// again with the same token is admitted again, on the same site, and
// another booture still cannot use that token. b may ask again until the
// retry window (5 minutes of a's clock, moved forward rather than waited for)
// is over, and no longer after.
func TestJoinRetryAfterLostAnswer(t *testing.T) {
	var skew atomic.Int64 // a's clock ahead of the real one
	a := startTestNode(t, "a", "", key.PrivateKey{}, skewedClock(&skew))
	b := startTestNode(t, "b", "", key.PrivateKey{})
	c := startTestNode(t, "c", "", key.PrivateKey{})
	inv, err := a.Invite(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ParseToken(inv.Token)
	if err != nil {
		t.Fatal(err)
	}
	// b's first request, whose answer b reads and drops.
	first := joinAnswerOnly(t, b, tok)
	if first.Outcome != "accept" {
		t.Fatalf("first answer: %+v", first)
	}

	res, err := b.Join(context.Background(), inv.Token)
	if err != nil {
		t.Fatalf("asking again after a lost answer: %v", err)
	}
	if res.Site != first.Site {
		t.Errorf("asking again gave site %d, the first answer %d", res.Site, first.Site)
	}
	_, err = c.Join(context.Background(), inv.Token)
	if !errorIs(err, ErrTokenUsed) {
		t.Fatalf("another booture with the used token: got %v, want ErrTokenUsed", err)
	}
	var refusal *JoinRefusal
	if !errors.As(err, &refusal) || refusal.Code != RefusedUsed || !strings.Contains(refusal.Reason, "by b at ") {
		t.Fatalf("another booture with the used token: got %#v, want a refusal %q naming b", err, RefusedUsed)
	}
	waitfor.Cond(t, 10*time.Second, "a and b see each other", func() bool {
		_, ok := a.View().Peer("b")
		_, ok2 := b.View().Peer("a")
		return ok && ok2
	})
	// a's clock is moved to either side of the window's end, counted from
	// when a marked the token used; the margin covers the time a join takes.
	a.mu.Lock()
	usedAt := time.UnixMilli(a.invitationLocked(tok.ID[:]).UsedAt)
	a.mu.Unlock()
	const window = 5 * time.Minute // redeemRetryWindow, written out so that the test pins it
	const margin = 30 * time.Second
	skew.Store(int64(time.Until(usedAt.Add(window - margin))))
	res, err = b.Join(context.Background(), inv.Token)
	if err != nil {
		t.Fatalf("b again near the end of the retry window: %v", err)
	}
	if res.Site != first.Site {
		t.Errorf("b again near the end of the retry window got site %d, the first answer %d", res.Site, first.Site)
	}
	skew.Store(int64(time.Until(usedAt.Add(window + time.Second))))
	if _, err := b.Join(context.Background(), inv.Token); !errorIs(err, ErrTokenUsed) {
		t.Fatalf("b again after the retry window: got %v, want ErrTokenUsed", err)
	}
	if _, err := c.Join(context.Background(), inv.Token); !errorIs(err, ErrTokenUsed) {
		t.Fatalf("another booture after the retry window: got %v, want ErrTokenUsed", err)
	}
}

// skewedClock gives a node a clock ahead of the real one by what ahead
// holds: time passes for that node alone, without the test waiting.
func skewedClock(ahead *atomic.Int64) func(*Config) {
	return func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	}
}

func TestTokenErrors(t *testing.T) {
	var aAhead, cAhead atomic.Int64
	a := startTestNode(t, "a", "", key.PrivateKey{}, skewedClock(&aAhead))
	b := startTestNode(t, "b", "", key.PrivateKey{})
	c := startTestNode(t, "c", "", key.PrivateKey{}, skewedClock(&cAhead))
	inv, err := a.Invite(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Join(context.Background(), inv.Token); err != nil {
		t.Fatalf("first use: %v", err)
	}
	_, err = c.Join(context.Background(), inv.Token)
	if !errorIs(err, ErrTokenUsed) {
		t.Fatalf("second use: got %v, want ErrTokenUsed", err)
	}
	if _, err := c.Join(context.Background(), inv.Token[:len(inv.Token)-3]); !errorIs(err, ErrTokenGarbled) {
		t.Fatalf("truncated token: got %v, want ErrTokenGarbled", err)
	}
	short, err := a.Invite(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Expired for the inviter (the expiry has a one-second precision), not
	// yet for c: the inviter refuses it.
	aAhead.Store(int64(2 * time.Second))
	if _, err := c.Join(context.Background(), short.Token); !errorIs(err, ErrTokenExpired) {
		t.Fatalf("token expired for the inviter: got %v, want ErrTokenExpired", err)
	}
	// Expired for c, not for the inviter: c refuses it without asking
	// (had it asked, the inviter would have let it in).
	aAhead.Store(0)
	cAhead.Store(int64(2 * time.Second))
	if _, err := c.Join(context.Background(), short.Token); !errorIs(err, ErrTokenExpired) {
		t.Fatalf("token expired for the joiner: got %v, want ErrTokenExpired", err)
	}
	cAhead.Store(0)
	// A well-formed token the inviter never issued.
	tok, _ := ParseToken(inv.Token)
	tok.ID[0] ^= 0xff
	if _, err := c.Join(context.Background(), tok.Encode()); !errorIs(err, ErrTokenUnknown) {
		t.Fatalf("unknown token: got %v, want ErrTokenUnknown", err)
	}
	// Right ID, wrong secret: someone tampered with it.
	tok, _ = ParseToken(inv.Token)
	fresh, _ := a.Invite(time.Hour)
	ft, _ := ParseToken(fresh.Token)
	ft.Secret[0] ^= 1
	if _, err := c.Join(context.Background(), ft.Encode()); !errorIs(err, ErrTokenGarbled) {
		t.Fatalf("tampered token: got %v, want ErrTokenGarbled", err)
	}
	// The tampered attempt did not burn the real token.
	if _, err := c.Join(context.Background(), fresh.Token); err != nil {
		t.Fatalf("fresh token after a tampered attempt: %v", err)
	}
}

func errorIs(err, target error) bool {
	for err != nil {
		if err == target {
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			if m, ok := err.(interface{ Unwrap() []error }); ok {
				for _, e := range m.Unwrap() {
					if errorIs(e, target) {
						return true
					}
				}
			}
			return false
		}
		err = u.Unwrap()
	}
	return false
}

func TestAnyMemberCanInvite(t *testing.T) {
	a := startTestNode(t, "a", "", key.PrivateKey{})
	b := startTestNode(t, "b", "", key.PrivateKey{})
	c := startTestNode(t, "c", "", key.PrivateKey{})
	b.joinVia(a)
	c.joinVia(b) // b is not the founder
	waitfor.Cond(t, 20*time.Second, "convergence", func() bool { return converged([]*testNode{a, b, c}) })
	distinctSites(t, []*testNode{a, b, c})
}

func TestRestartKeepsIdentity(t *testing.T) {
	nodes := startCluster(t, 3)
	b := nodes[1]
	before := b.View()
	b.Close()
	waitfor.Cond(t, 20*time.Second, "b2 dead on b1", func() bool {
		p, _ := nodes[0].View().Peer("b2")
		return p.State == StateDead
	})
	b2 := startTestNode(t, "b2", b.dir, b.priv)
	after := b2.View()
	if after.Site != before.Site || after.MeshID != before.MeshID || b2.PublicKey() != b.PublicKey() {
		t.Fatalf("identity changed across restart: before site %v mesh %v, after site %v mesh %v",
			before.Site, before.MeshID, after.Site, after.MeshID)
	}
	all := []*testNode{nodes[0], b2, nodes[2]}
	waitfor.Cond(t, 20*time.Second, "re-convergence", func() bool { return converged(all) })
}

func TestDeadAndLeave(t *testing.T) {
	nodes := startCluster(t, 3)
	nodes[2].Close()
	start := time.Now()
	waitfor.Cond(t, 15*time.Second, "b3 dead", func() bool {
		p, _ := nodes[0].View().Peer("b3")
		return p.State == StateDead
	})
	t.Logf("killed booture marked dead after %v", time.Since(start).Round(time.Millisecond))

	if err := nodes[1].Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	waitfor.Cond(t, 5*time.Second, "b2 left", func() bool {
		p, _ := nodes[0].View().Peer("b2")
		return p.State == StateLeft
	})
	t.Logf("leave seen after %v", time.Since(start).Round(time.Millisecond))
	if nodes[1].View().MeshID == nodes[0].View().MeshID {
		t.Fatal("after leave, b2 is still in the old mesh")
	}
}

func TestCrossJoinsFormOneMesh(t *testing.T) {
	a := startTestNode(t, "a", "", key.PrivateKey{})
	b := startTestNode(t, "b", "", key.PrivateKey{})
	c := startTestNode(t, "c", "", key.PrivateKey{})
	ta, _ := a.Invite(time.Hour)
	tb, _ := b.Invite(time.Hour)
	tc, _ := c.Invite(time.Hour)
	var wg sync.WaitGroup
	for _, j := range []struct {
		n   *testNode
		tok string
	}{{a, tb.Token}, {b, tc.Token}, {c, ta.Token}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := j.n.Join(context.Background(), j.tok); err != nil {
				t.Errorf("join: %v", err)
			}
		}()
	}
	wg.Wait()
	all := []*testNode{a, b, c}
	waitfor.Cond(t, 30*time.Second, "one mesh", func() bool { return converged(all) })
	waitfor.Cond(t, 10*time.Second, "distinct sites", func() bool {
		seen := map[int]bool{}
		for _, n := range all {
			seen[n.View().Site.Number] = true
		}
		return len(seen) == 3
	})
}

func TestSeparateMeshesNeverMix(t *testing.T) {
	a1 := startTestNode(t, "a1", "", key.PrivateKey{})
	a2 := startTestNode(t, "a2", "", key.PrivateKey{})
	b1 := startTestNode(t, "b1", "", key.PrivateKey{})
	b2 := startTestNode(t, "b2", "", key.PrivateKey{})
	a2.joinVia(a1)
	b2.joinVia(b1)
	// A booture of mesh B tries to gossip straight to mesh A.
	if k := b1.joinAddrs([]netip.AddrPort{a1.View().Self.Gossip}); k != 0 {
		t.Fatalf("a gossip join across meshes succeeded (%d)", k)
	}
	// Gossip goes on in both meshes after the attempt: a newcomer joins
	// each and is seen by all of its mesh. Had the attempt put a booture
	// of one mesh into the other's tables, gossip would have spread it by
	// then.
	a3 := startTestNode(t, "a3", "", key.PrivateKey{})
	b3 := startTestNode(t, "b3", "", key.PrivateKey{})
	a3.joinVia(a2)
	b3.joinVia(b2)
	meshA, meshB := []*testNode{a1, a2, a3}, []*testNode{b1, b2, b3}
	waitfor.Cond(t, 20*time.Second, "a newcomer in each mesh", func() bool { return converged(meshA) && converged(meshB) })
	for _, n := range append(meshA, meshB...) {
		self := n.View().Self.Name
		for name := range alivePeers(n.Node) {
			if name[0] != self[0] {
				t.Errorf("%s sees %s of another mesh", self, name)
			}
		}
	}
}
