package mesh

import (
	"encoding/json"
	"log/slog"
	"math"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/booture/booture/catalog"
	"github.com/booture/booture/internal/waitfor"
	"github.com/booture/booture/key"
)

// A booture holds the mesh's gossip key, so it can say anything in gossip.
// These tests have one (the rogue) lie about another (the victim): what it
// says about the victim must be refused, and the victim's own word must
// still count.

// forgingDelegate adds forged records to what its booture sends in full
// state exchanges, as a rogue booture would.
type forgingDelegate struct {
	memberlist.Delegate
	mu     *sync.Mutex
	forged *[]Record
}

func (d forgingDelegate) LocalState(join bool) []byte {
	var ps pushState
	if err := json.Unmarshal(d.Delegate.LocalState(join), &ps); err != nil {
		panic(err)
	}
	d.mu.Lock()
	ps.Records = append(ps.Records, *d.forged...)
	d.mu.Unlock()
	b, err := json.Marshal(ps)
	if err != nil {
		panic(err)
	}
	return b
}

// rogue is a booture of the mesh whose full state exchanges carry what the
// test puts in forged.
type rogue struct {
	*testNode
	mu     sync.Mutex
	forged []Record
}

func startRogue(t *testing.T, name string) *rogue {
	t.Helper()
	r := &rogue{}
	r.testNode = startTunedNode(t, name, "", key.PrivateKey{}, func(c *memberlist.Config) {
		c.Delegate = forgingDelegate{Delegate: c.Delegate, mu: &r.mu, forged: &r.forged}
	})
	return r
}

// tell has the rogue forge recs and hands them to n in a full state
// exchange (a gossip join runs one before it returns).
func (r *rogue) tell(t *testing.T, n *testNode, recs ...Record) {
	t.Helper()
	r.mu.Lock()
	r.forged = recs
	r.mu.Unlock()
	if k := n.joinAddrs([]netip.AddrPort{r.View().Self.Gossip}); k == 0 {
		t.Fatal("state exchange with the rogue failed")
	}
}

// TestForgedRecordRefused: a rogue booture sends another booture's record
// with its own endpoint and a generation near the maximum (which would win
// every later merge), then the same key under another name. Both are
// refused, and the victim's later changes still reach the others.
func TestForgedRecordRefused(t *testing.T) {
	nodes := startCluster(t, 2)
	victim, a := nodes[0], nodes[1]
	r := startRogue(t, "rogue")
	r.joinVia(a)
	all := []*testNode{victim, a, r.testNode}
	waitfor.Cond(t, 20*time.Second, "convergence", func() bool { return converged(all) })

	real, ok := r.View().Peer("b1")
	if !ok {
		t.Fatal("the rogue does not know its victim")
	}
	forged := real.Record
	forged.Endpoint = netip.MustParseAddrPort("203.0.113.66:51820")
	forged.Gen = math.MaxInt64 - 1
	forged.Catalog = math.MaxInt64 - 1
	r.tell(t, a, forged)
	if p, _ := a.View().Peer("b1"); p.Endpoint != real.Endpoint || p.Gen == forged.Gen {
		t.Fatalf("a took the forged record of b1: endpoint %v, gen %d", p.Endpoint, p.Gen)
	}

	// The victim's key under another name, and a record that reuses it
	// with a newer generation, from the rogue's own gossip address.
	renamed := real.Record
	renamed.Name, renamed.Gen = "evil", real.Gen+1
	renamed.Gossip = r.View().Self.Gossip
	r.tell(t, a, renamed)
	if p, ok := a.View().Peer("b1"); !ok || p.PublicKey != victim.PublicKey() {
		t.Fatalf("a lost b1's record to a forgery: %+v", p)
	}
	if _, ok := a.View().Peer("evil"); ok {
		t.Fatal("a lists a forged booture under the victim's key")
	}

	// The victim's own changes still win.
	victim.SetServices([]catalog.Service{svc("b1", "cloud", catalog.HealthHealthy)})
	want := victim.View().Self
	waitfor.Cond(t, 10*time.Second, "b1's new record on a", func() bool {
		p, _ := a.View().Peer("b1")
		return p.Gen == want.Gen && p.Catalog == want.Catalog && p.Endpoint == want.Endpoint
	})
}

// dropCatalogRequests is a Delegate that never answers catalog requests:
// the others announce its catalog but never receive it, which leaves room
// for a forged one.
type dropCatalogRequests struct{ memberlist.Delegate }

func (d dropCatalogRequests) NotifyMsg(b []byte) {
	if len(b) > 0 && b[0] == msgCatalogRequest {
		return
	}
	d.Delegate.NotifyMsg(b)
}

// TestForgedCatalogRefused: a rogue booture sends a catalog in another
// booture's name, at the version that booture announces, with a service
// pointing outside the mesh. It is refused; the rogue's own catalog is
// taken.
func TestForgedCatalogRefused(t *testing.T) {
	victim := startTunedNode(t, "victim", "", key.PrivateKey{}, func(c *memberlist.Config) {
		c.Delegate = dropCatalogRequests{c.Delegate}
	})
	a := startTestNode(t, "a", "", key.PrivateKey{})
	r := startRogue(t, "rogue")
	a.joinVia(victim)
	r.joinVia(a)
	all := []*testNode{victim, a, r.testNode}
	waitfor.Cond(t, 20*time.Second, "convergence", func() bool { return converged(all) })

	victim.SetServices([]catalog.Service{svc("victim", "cloud", catalog.HealthHealthy)})
	version := victim.View().Self.Catalog
	waitfor.Cond(t, 10*time.Second, "the victim's catalog announced to a", func() bool {
		p, _ := a.View().Peer("victim")
		return p.Catalog == version
	})

	evil := svc("victim", "cloud", catalog.HealthHealthy)
	evil.URL = "http://203.0.113.66/"
	// The rogue signs what it can: with its own key.
	msg := map[string]any{"v": 2, "from": "victim", "key": victim.PublicKey(), "version": version,
		"services": []catalog.Service{evil}}
	b, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	a.handleCatalog(forgeSignature(t, r.priv, b))
	for _, s := range a.Services() {
		if s.Booture == "victim" {
			t.Fatalf("a took a forged catalog of the victim: %+v", s)
		}
	}

	// The rogue's own catalog is taken.
	r.SetServices([]catalog.Service{svc("rogue", "blog", catalog.HealthHealthy)})
	waitfor.Cond(t, 10*time.Second, "the rogue's own catalog on a", func() bool {
		return hasService(a.Node, "rogue", "blog", catalog.HealthHealthy)
	})
}

// forgeSignature signs a catalog message with priv, whatever key it names:
// the best a forger can do.
func forgeSignature(t *testing.T, priv key.PrivateKey, b []byte) []byte {
	t.Helper()
	var w catalogWire
	if err := json.Unmarshal(b, &w); err != nil {
		t.Fatal(err)
	}
	w.Sig = sign(priv, catalogMessage(w.From, w.Key, w.Version, w.Services), nil)
	out, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// olderDaemon is a Delegate that speaks as a daemon from before signatures:
// version 1 node metadata, records without signatures.
type olderDaemon struct{ memberlist.Delegate }

func (d olderDaemon) NodeMeta(limit int) []byte {
	var m nodeMeta
	if err := json.Unmarshal(d.Delegate.NodeMeta(limit), &m); err != nil {
		panic(err)
	}
	m.V, m.Sig = metaUnsigned, Signature{}
	b, _ := json.Marshal(m)
	return b
}

func (d olderDaemon) LocalState(join bool) []byte {
	var ps pushState
	if err := json.Unmarshal(d.Delegate.LocalState(join), &ps); err != nil {
		panic(err)
	}
	for i := range ps.Records {
		ps.Records[i].Sig = Signature{}
	}
	b, _ := json.Marshal(ps)
	return b
}

// TestOlderDaemonDuringUpgrade: a booture whose daemon predates signatures
// still takes part in the mesh (bootures upgrade one at a time), and the
// others say once that it does not sign; the upgraded bootures' records
// cannot be replaced by unsigned ones meanwhile.
func TestOlderDaemonDuringUpgrade(t *testing.T) {
	var logs syncLog
	a := startTestNode(t, "a", "", key.PrivateKey{}, func(c *Config) { c.Logger = logs.logger() })
	b := startTestNode(t, "b", "", key.PrivateKey{})
	old := startTunedNode(t, "old", "", key.PrivateKey{}, func(c *memberlist.Config) {
		c.Delegate = olderDaemon{c.Delegate}
	})
	b.joinVia(a)
	old.joinVia(a)
	all := []*testNode{a, b, old}
	waitfor.Cond(t, 20*time.Second, "convergence with the older daemon", func() bool { return converged(all) })
	p, ok := a.View().Peer("old")
	if !ok || !p.Sig.IsZero() || p.Endpoint != old.View().Self.Endpoint {
		t.Fatalf("a's record of the older daemon: %+v", p)
	}
	if pb, _ := a.View().Peer("b"); pb.Sig.IsZero() {
		t.Fatal("a holds b's record unsigned")
	}
	if k := strings.Count(logs.String(), "too old to sign"); k != 1 {
		t.Fatalf("the older daemon was reported %d times, want once", k)
	}

	// An unsigned record of b (an upgraded booture) is refused.
	r := startRogue(t, "rogue")
	r.joinVia(a)
	waitfor.Cond(t, 20*time.Second, "convergence with the rogue", func() bool { return converged(append(all, r.testNode)) })
	rb, _ := r.View().Peer("b")
	forged := rb.Record
	forged.Sig = Signature{}
	forged.Endpoint = netip.MustParseAddrPort("203.0.113.66:51820")
	forged.Gen++
	r.tell(t, a, forged)
	if pb, _ := a.View().Peer("b"); pb.Endpoint != b.View().Self.Endpoint {
		t.Fatalf("a took an unsigned record of b: %+v", pb)
	}
}

// syncLog collects a node's log lines.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *syncLog) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// A booture whose key is a VPN member's (or ours) is left out of the plan,
// and only it: the configuration stays valid, so later changes apply.
func TestPlanSkipsTakenKeys(t *testing.T) {
	newPriv := func() key.PrivateKey { k, _ := key.NewPrivateKey(); return k }
	self, b, member := newPriv(), newPriv(), newPriv()
	var id MeshID
	id[0] = 1
	v := View{Self: Record{Name: "a", PublicKey: self.Public(), Site: 1}, ULA: id.ULA()}
	v.Site = SiteOf(v.ULA, 1)
	now := time.Now()
	peer := func(name string, k key.PublicKey, site int) Peer {
		return Peer{Record: Record{Name: name, PublicKey: k, Site: site, Endpoint: netip.MustParseAddrPort("198.51.100.1:51820")},
			State: StateAlive, UpSince: now.Add(-time.Hour)}
	}
	v.Peers = []Peer{peer("b", b.Public(), 2), peer("c", member.Public(), 3), peer("d", self.Public(), 4)}
	in := PlanInput{View: v, PrivateKey: self, Interface: "bt0", Now: now,
		Members: []MemberPeer{{PublicKey: member.Public(), IPv4: netip.MustParseAddr("10.77.1.2")}}}
	cfg := Plan(in)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("plan with a booture reusing a member's key is invalid: %v", err)
	}
	if len(cfg.Peers) != 2 {
		t.Fatalf("plan has %d peers, want b and the member: %+v", len(cfg.Peers), cfg.Peers)
	}
	for _, p := range cfg.Peers {
		if p.PublicKey == member.Public() && (len(p.AllowedIPs) != 1 || p.AllowedIPs[0].String() != "10.77.1.2/32") {
			t.Fatalf("the member's peer got the booture's sites: %v", p.AllowedIPs)
		}
	}
	skips := PlanSkips(in)
	if len(skips) != 2 || skips[0].Name != "c" || !skips[0].Member || skips[1].Name != "d" || skips[1].Member {
		t.Fatalf("skips = %+v, want c (a member's key) and d (ours)", skips)
	}
}

// TestForgedNameRefused: a rogue booture signs a record of its own under
// another booture's name, then a catalog of its own under that name with a
// service pointing outside: both are refused, and the victim keeps its
// name.
func TestForgedNameRefused(t *testing.T) {
	nodes := startCluster(t, 2)
	victim, a := nodes[0], nodes[1]
	r := startRogue(t, "rogue")
	r.joinVia(a)
	all := []*testNode{victim, a, r.testNode}
	waitfor.Cond(t, 20*time.Second, "convergence", func() bool { return converged(all) })

	r.mu.Lock()
	own := r.selfLocked()
	r.mu.Unlock()
	own.Name, own.Gen = "b1", own.Gen+1
	own.Catalog = own.Gen
	r.tell(t, a, signed(r.priv, own))
	if p, ok := a.View().Peer("b1"); !ok || p.PublicKey != victim.PublicKey() {
		t.Fatalf("a's b1 is %+v", p)
	}
	for _, p := range a.View().Peers {
		if p.PublicKey == r.PublicKey() && p.Name != "rogue" {
			t.Fatalf("a lists the rogue as %s", p.Name)
		}
	}

	evil := svc("b1", "cloud", catalog.HealthHealthy)
	evil.URL = "http://203.0.113.66/"
	b, err := encodeCatalog(r.priv, "b1", own.Gen, []catalog.Service{evil}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.handleCatalog(b)
	for _, s := range a.Services() {
		if s.Booture == "b1" {
			t.Fatalf("a took the rogue's catalog under b1's name: %+v", s)
		}
	}
}
