package mesh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/booture/booture/catalog"
	"github.com/booture/booture/internal/names"
	"github.com/booture/booture/internal/store"
	"github.com/booture/booture/key"
)

// StateFile is the name of the mesh state file in the state directory.
const StateFile = "mesh.json"

// Profile selects gossip timings.
type Profile string

const (
	// ProfileLAN suits bootures on one LAN or a good internet link: a
	// killed booture is declared dead within about 5 to 8 seconds.
	ProfileLAN Profile = "lan"
	// ProfileWAN suits slow or lossy links: slower failure detection, less
	// false alarms.
	ProfileWAN Profile = "wan"
)

// ParseProfile returns the profile named s ("" means lan).
func ParseProfile(s string) (Profile, error) {
	switch Profile(s) {
	case "", ProfileLAN:
		return ProfileLAN, nil
	case ProfileWAN:
		return ProfileWAN, nil
	}
	return "", fmt.Errorf("invalid gossip profile %q: want lan or wan", s)
}

func (p Profile) memberlistConfig() *memberlist.Config {
	if p == ProfileWAN {
		return memberlist.DefaultWANConfig()
	}
	c := memberlist.DefaultLANConfig()
	// Declare a silent booture dead after a short, bounded suspicion: with
	// SuspicionMaxTimeoutMult 1 the timeout does not stretch while waiting
	// for confirmations (3 s for up to 10 bootures, about 4 s for 20).
	c.SuspicionMult = 3
	c.SuspicionMaxTimeoutMult = 1
	return c
}

// Config configures a Node.
type Config struct {
	// Name is the booture's name, a DNS label unique in the mesh.
	Name string
	// StateDir holds the mesh state file.
	StateDir string
	// PrivateKey is the booture's WireGuard private key, its identity.
	PrivateKey key.PrivateKey
	// Bind is the underlay address gossip listens on; invalid means all.
	Bind netip.Addr
	// GossipPort is the gossip TCP and UDP port (0: any free port, tests).
	GossipPort int
	// Advertise is the underlay address other bootures use to reach this
	// one (gossip and WireGuard).
	Advertise netip.Addr
	// WireGuardEndpoint is the WireGuard endpoint advertised to the mesh.
	WireGuardEndpoint netip.AddrPort
	// Profile selects gossip timings.
	Profile Profile
	// Version is the daemon's version, shown to the other bootures.
	Version string
	// Logger receives the node's events; nothing secret is logged.
	Logger *slog.Logger
	// OnChange is called (never with a lock held, and never blocking for
	// long) whenever the view of the mesh may have changed.
	OnChange func()
	// RejoinInterval is how often unreachable bootures of the roster are
	// tried again; 0 means 5 s.
	RejoinInterval time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if err := names.Check(c.Name); err != nil {
		return fmt.Errorf("booture name: %w", err)
	}
	if c.StateDir == "" {
		return errors.New("mesh: no state directory")
	}
	if c.PrivateKey.IsZero() {
		return errors.New("mesh: no private key")
	}
	if !c.Advertise.IsValid() {
		return errors.New("mesh: no advertise address: give --advertise or --listen")
	}
	if c.GossipPort < 0 || c.GossipPort > 65535 {
		return fmt.Errorf("mesh: gossip port %d out of range", c.GossipPort)
	}
	if _, err := ParseProfile(string(c.Profile)); err != nil {
		return err
	}
	return nil
}

// Node is this booture's membership in its mesh.
//
// Two locks guard it. opMu serializes the operations that change the
// mesh's credentials or this booture's place in it; mu guards the fields
// below it, and is held only briefly, never while waiting for the network.
// A method whose name ends in Locked must be called with n.mu held; one
// that needs n.opMu says so in its comment.
type Node struct {
	cfg        Config
	log        *slog.Logger
	privateKey key.PrivateKey
	publicKey  key.PublicKey
	path       string
	now        func() time.Time
	counters   ByteCounters
	// guard bounds what strangers can open on the gossip port; it
	// outlives gossip restarts.
	guard *inboundGuard

	// opMu serializes the operations that change the mesh's credentials
	// or this booture's place in it (join, merge, expel, leave, renumber).
	opMu sync.Mutex

	mu       sync.Mutex
	state    persisted                   // Roster is kept in roster while running
	roster   *roster                     // other bootures, by public key (its own lock)
	metas    map[string]metaEntry        // last record decoded per booture name, see decodeMetaLocked
	liveKeys map[key.PublicKey]time.Time // bootures gossip sees up, and since when
	logged   map[key.PublicKey]PeerState // last state logged per booture
	// noted are the conflicts recorded since start (state.Conflicts keeps
	// the last 20 only); unsettled is the one last logged as impossible
	// to settle (the mesh is full). Both keep a conflict from being
	// logged and recorded again at every change of the mesh.
	noted     map[conflictKey]bool
	unsettled conflictKey
	// view is the digest of the bootures gossip sees up, unchanged since
	// viewSince; differ are the bootures whose digests differed from it
	// since; lastRepair is when digests last made this booture exchange
	// full state (see digest.go).
	view                  viewDigest
	viewSince, lastRepair time.Time
	differ                map[string]bool
	repairs               atomic.Int64 // exchanges started on a digest

	localServices   []catalog.Service              // this booture's catalog
	servicesSet     bool                           // SetServices was called since start
	catalogs        map[key.PublicKey]*peerCatalog // other bootures' catalogs
	dirty           bool                           // roster changes not yet written
	gossipList      *memberlist.Memberlist
	gossipTransport *gossipTransport
	gossipKeyring   *memberlist.Keyring
	retry           map[key.PublicKey]*retryState
	oldGossipKeys   [][]byte // previous gossip keys still accepted for a grace period
	closed          bool

	// said is what was logged once per booture (see firstLocked).
	said map[said]bool
	// verifier checks the signatures of records and catalogs.
	verifier verifier
	// selfMsg and selfSig are the signed fields of this booture's record
	// and their signature, as last signed (see selfLocked).
	selfMsg []byte
	selfSig Signature
	signs   atomic.Int64 // signatures made (for the scale benchmark)
	// catalogSent is our catalog as last sent (signed), for version
	// catalogSentFor and name catalogSentName (see catalogAnswerLocked).
	catalogSent     []byte
	catalogSentFor  int64
	catalogSentName string

	// tuneGossip, set by tests before Start, adjusts memberlist's
	// configuration last.
	tuneGossip func(*memberlist.Config)

	kick   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type retryState struct {
	next  time.Time
	delay time.Duration
	grace bool // first wait, while gossip may still bring it back
}

// New loads the node's mesh state from cfg.StateDir, or founds a mesh of one
// if there is none. It does not start gossip: see Start.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Profile == "" {
		cfg.Profile = ProfileLAN
	}
	if cfg.RejoinInterval <= 0 {
		cfg.RejoinInterval = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.OnChange == nil {
		cfg.OnChange = func() {}
	}
	n := &Node{
		cfg:        cfg,
		log:        cfg.Logger,
		privateKey: cfg.PrivateKey,
		publicKey:  cfg.PrivateKey.Public(),
		path:       filepath.Join(cfg.StateDir, StateFile),
		now:        cfg.Now,
		roster:     newRoster(),
		liveKeys:   make(map[key.PublicKey]time.Time),
		logged:     make(map[key.PublicKey]PeerState),
		catalogs:   make(map[key.PublicKey]*peerCatalog),
		retry:      make(map[key.PublicKey]*retryState),
		kick:       make(chan struct{}, 1),
		guard:      newInboundGuard(defaultInboundLimits(), cfg.Logger),
	}
	if err := store.EnsureDir(cfg.StateDir, 0o700); err != nil {
		return nil, err
	}
	st, err := loadState(n.path)
	switch {
	case err == nil:
		if st.Self.PublicKey != n.publicKey {
			return nil, fmt.Errorf("mesh state %s belongs to another key: the private key file was replaced", n.path)
		}
		n.state = *st
		for _, r := range st.Roster {
			if r.PublicKey != n.publicKey && r.Validate() == nil {
				n.roster.set(r)
			}
		}
		n.state.Roster = nil
		// The name and endpoints come from the configuration; the site,
		// its claim and the key stay as they were.
		n.state.Self.Name = cfg.Name
		n.state.Self.Endpoint = cfg.WireGuardEndpoint
		n.state.Self.Version = cfg.Version
		n.state.Self.Gen = nextGen(n.state.Self.Gen, n.now())
		// No services until the plugins say so: the others drop what
		// they held of our old catalog.
		n.state.Self.Catalog = 0
		n.log.Info("mesh state loaded", "mesh", n.state.Creds.MeshID.String(), "site", n.state.Self.Site, "bootures", n.roster.len()+1)
	case store.IsNotExist(err):
		n.foundLocked()
		n.log.Info("founded a new mesh of one", "mesh", n.state.Creds.MeshID.String(), "site", n.state.Self.Site)
	default:
		return nil, err
	}
	if err := n.saveLocked(); err != nil {
		return nil, err
	}
	return n, nil
}

// foundLocked resets the state to a new mesh of one. n.mu must be held
// (or the node not shared yet).
func (n *Node) foundLocked() {
	now := n.now()
	n.state = persisted{
		Version: stateVersion,
		Creds:   newCredentials(now),
		Self: Record{
			Name: n.cfg.Name, PublicKey: n.publicKey, Site: MinSite, SiteClaim: now.UnixMilli(),
			Endpoint: n.cfg.WireGuardEndpoint, Version: n.cfg.Version, Gen: nextGen(0, now),
		},
	}
	n.roster.clear()
	n.retry = make(map[key.PublicKey]*retryState)
	n.catalogs = make(map[key.PublicKey]*peerCatalog)
}

// saveLocked writes the state file. n.mu must be held.
func (n *Node) saveLocked() error {
	p := n.persistedLocked()
	if err := store.WriteJSON(n.path, &p, 0o600); err != nil {
		return fmt.Errorf("saving mesh state: %w", err)
	}
	n.dirty = false
	return nil
}

// selfLocked returns this booture's record, signed. The signature is made
// again only when a signed field changed.
func (n *Node) selfLocked() Record {
	r := n.state.Self
	r.Sig = Signature{}
	msg := recordMessage(&r)
	if !bytes.Equal(msg, n.selfMsg) {
		n.selfMsg, n.selfSig = msg, sign(n.privateKey, msg, &n.signs)
	}
	r.Sig = n.selfSig
	return r
}

// PublicKey returns the booture's public key.
func (n *Node) PublicKey() key.PublicKey { return n.publicKey }

// Start starts gossip and the background work (finding unreachable bootures
// again, writing the roster). It returns once gossip listens.
func (n *Node) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	n.cancel = cancel
	if err := n.startGossip(); err != nil {
		cancel()
		return err
	}
	n.wg.Add(1)
	go n.loop(ctx)
	n.Kick()
	return nil
}

// Close stops gossip without leaving the mesh (peers will see this booture
// as dead until it comes back) and writes the state.
func (n *Node) Close() error {
	if n.cancel != nil {
		n.cancel()
	}
	n.wg.Wait()
	n.opMu.Lock()
	defer n.opMu.Unlock()
	n.stopGossip()
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	return n.saveLocked()
}

// Kick asks the background loop to look at the mesh now (conflicts,
// unreachable bootures) rather than at its next tick.
func (n *Node) Kick() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

func (n *Node) changed() {
	n.cfg.OnChange()
	n.Kick()
}

// startGossip creates the memberlist instance with the current
// credentials. It must not be called with n.mu held.
func (n *Node) startGossip() error {
	mt, err := listenGossip(n.cfg.Bind, n.cfg.GossipPort, n.handleStream, &n.counters, n.guard, n.log)
	if err != nil {
		return err
	}
	port := mt.port
	// Keep the port a first start picked (tests use port 0): a gossip
	// restart (a change of mesh) must not move this booture.
	n.cfg.GossipPort = port

	n.mu.Lock()
	n.state.Self.Gossip = netip.AddrPortFrom(n.cfg.Advertise, uint16(port))
	key := append([]byte(nil), n.state.Creds.Key...)
	n.mu.Unlock()

	mc := n.cfg.Profile.memberlistConfig()
	mc.Name = n.cfg.Name
	mc.Transport = mt
	mc.AdvertiseAddr = n.cfg.Advertise.String()
	mc.AdvertisePort = port
	kr, err := memberlist.NewKeyring(nil, key)
	if err != nil {
		mt.Shutdown()
		return fmt.Errorf("gossip keyring: %w", err)
	}
	mc.Keyring = kr
	// A booture that comes back at another address (a new DHCP lease, or
	// a restart on another gossip port) may reclaim its name once it has
	// been dead this long; NotifyAlive checks that it is the same key.
	mc.DeadNodeReclaimTime = 3 * time.Second
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true
	mc.Delegate = (*delegate)(n)
	mc.Events = (*events)(n)
	mc.Alive = (*events)(n)
	mc.Conflict = (*events)(n)
	mc.Logger = newMemberlistLogger(n.log)
	if n.tuneGossip != nil {
		n.tuneGossip(mc)
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		mt.Shutdown()
		return fmt.Errorf("starting gossip: %w", err)
	}
	n.mu.Lock()
	n.gossipList, n.gossipTransport, n.gossipKeyring = ml, mt, kr
	n.oldGossipKeys = nil
	n.mu.Unlock()
	n.log.Info("gossip started", "listen", netip.AddrPortFrom(n.cfg.Bind, uint16(port)).String(), "advertise", mc.AdvertiseAddr, "port", port)
	return nil
}

// stopGossip shuts memberlist down without a leave message. n.opMu must be
// held (or the node be closing), n.mu not.
func (n *Node) stopGossip() {
	n.mu.Lock()
	ml := n.gossipList
	n.gossipList, n.gossipTransport, n.gossipKeyring = nil, nil, nil
	n.liveKeys = make(map[key.PublicKey]time.Time)
	n.mu.Unlock()
	if ml != nil {
		ml.Shutdown()
	}
}

// restartGossip switches to the current credentials and joins seeds.
func (n *Node) restartGossip(seeds []netip.AddrPort) error {
	n.stopGossip()
	if err := n.startGossip(); err != nil {
		return err
	}
	go n.joinAddrs(seeds)
	return nil
}

func (n *Node) memberlist() *memberlist.Memberlist {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.gossipList
}

func (n *Node) transport() *gossipTransport {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.gossipTransport
}

// joinAddrs asks memberlist to join the bootures at addrs.
func (n *Node) joinAddrs(addrs []netip.AddrPort) int {
	ml := n.memberlist()
	if ml == nil || len(addrs) == 0 {
		return 0
	}
	s := make([]string, 0, len(addrs))
	for _, a := range addrs {
		if a.IsValid() {
			s = append(s, a.String())
		}
	}
	k, err := ml.Join(s)
	if err != nil && k == 0 {
		n.log.Debug("joining gossip failed", "addrs", s, "err", err)
	}
	return k
}

// loop runs the periodic work: reconnecting unreachable bootures, settling
// site conflicts, writing the roster.
func (n *Node) loop(ctx context.Context) {
	defer n.wg.Done()
	rejoin := time.NewTicker(n.cfg.RejoinInterval)
	defer rejoin.Stop()
	flush := time.NewTicker(10 * time.Second)
	defer flush.Stop()
	// Find the mesh again right away after a restart.
	n.rejoinRound(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.kick:
			n.settleConflicts(n.refreshStates())
			n.checkKeyExposure()
			// Coalesce bursts of events (a big mesh starting).
			select {
			case <-ctx.Done():
				return
			case <-time.After(n.lookDelay()):
			}
		case <-rejoin.C:
			states := n.refreshStates()
			n.shareView()
			n.rejoinRound(ctx)
			n.requestCatalogs()
			n.settleConflicts(states)
			n.checkKeyExposure()
		case <-flush.C:
			n.mu.Lock()
			n.pruneLocked()
			if n.dirty {
				if err := n.saveLocked(); err != nil {
					n.log.Error("saving mesh state", "err", err)
				}
			}
			n.mu.Unlock()
		}
	}
}

// lookDelay is how long the loop waits, after looking at the mesh for a
// change, before it looks again: 200 ms, plus 200 ms per 50 bootures. In a
// big mesh each look costs more and changes come in floods (every booture
// hears of every join), so it looks less often: about every 2 s with 500.
func (n *Node) lookDelay() time.Duration {
	n.mu.Lock()
	size := n.roster.len()
	n.mu.Unlock()
	return time.Duration(1+size/50) * 200 * time.Millisecond
}

// leftRetention is how long a booture that left stays listed as "left".
const leftRetention = time.Hour

// pruneLocked forgets bootures that left long ago and old invitations.
func (n *Node) pruneLocked() {
	now := n.now()
	gone := n.roster.removeIf(func(r Record) bool {
		return r.Left() && now.Sub(time.UnixMilli(r.LeftAt)) > leftRetention
	})
	for _, k := range gone {
		delete(n.retry, k)
		n.dirty = true
	}
	kept := n.state.Invitations[:0]
	for _, inv := range n.state.Invitations {
		end := time.Unix(inv.Expires, 0)
		switch {
		case inv.UsedAt != 0:
			end = time.UnixMilli(inv.UsedAt)
		case inv.RevokedAt != 0:
			end = time.UnixMilli(inv.RevokedAt)
		}
		if now.Sub(end) < 7*24*time.Hour {
			kept = append(kept, inv)
		} else {
			n.dirty = true
		}
	}
	n.state.Invitations = kept
	if len(n.state.Conflicts) > 20 {
		n.state.Conflicts = n.state.Conflicts[len(n.state.Conflicts)-20:]
		n.dirty = true
	}
}

// rejoinRound tries to reach bootures of the roster that gossip does not
// see: after a crash, a cut or a partition, this is what makes the mesh whole
// again. It first compares credentials (catch-up), then joins gossip.
func (n *Node) rejoinRound(ctx context.Context) {
	ml := n.memberlist()
	if ml == nil {
		return
	}
	live := make(map[string]bool)
	for _, m := range ml.Members() {
		live[m.Name] = true
	}
	now := n.now()
	n.mu.Lock()
	if n.state.Expelled {
		n.mu.Unlock()
		return
	}
	var targets []Record
	for k, r := range n.roster.all() {
		if live[r.Name] || r.Left() || !r.Gossip.IsValid() {
			delete(n.retry, k)
			continue
		}
		rs := n.retry[k]
		alone := len(live) <= 1 // memberlist lists ourselves
		if rs == nil && !alone {
			// Newly missing while we are connected: gossip itself
			// may still bring it (a booture just starting, a suspect
			// one); step in only if it stays missing.
			n.retry[k] = &retryState{next: now.Add(2 * n.cfg.RejoinInterval), delay: n.cfg.RejoinInterval, grace: true}
			continue
		}
		if rs != nil && now.Before(rs.next) && !(alone && rs.grace) {
			continue
		}
		targets = append(targets, r)
	}
	n.mu.Unlock()
	rand.Shuffle(len(targets), func(i, j int) { targets[i], targets[j] = targets[j], targets[i] })
	// Alone, try hard to find the mesh again; connected, a couple of
	// attempts per round are enough to heal a partition, and more would
	// only load a big mesh.
	limit := 2
	if len(live) <= 1 {
		limit = 8 // only ourselves
	}
	if len(targets) > limit {
		targets = targets[:limit]
	}
	var wg sync.WaitGroup
	for _, r := range targets {
		wg.Add(1)
		go func(r Record) {
			defer wg.Done()
			err := n.reach(ctx, r)
			n.mu.Lock()
			defer n.mu.Unlock()
			if err == nil {
				delete(n.retry, r.PublicKey)
				return
			}
			rs := n.retry[r.PublicKey]
			if rs == nil {
				rs = &retryState{delay: n.cfg.RejoinInterval}
				n.retry[r.PublicKey] = rs
			} else if rs.delay < 3*n.cfg.RejoinInterval {
				rs.delay *= 2
			}
			rs.grace = false
			rs.next = n.now().Add(rs.delay)
			n.log.Debug("booture unreachable", "peer", r.Name, "retry_in", rs.delay, "err", err)
		}(r)
	}
	wg.Wait()
}

// reach makes contact with one booture of the roster.
func (n *Node) reach(ctx context.Context, r Record) error {
	if err := n.catchUp(ctx, r); err != nil {
		var unreachable *unreachableError
		if errors.As(err, &unreachable) {
			return err
		}
		// It answered but could not compare credentials (it does not
		// know us yet, say): gossip decides whether we share a key.
		n.log.Debug("catch-up refused; trying gossip", "peer", r.Name, "err", err)
	}
	if n.joinAddrs([]netip.AddrPort{r.Gossip}) == 0 {
		return errors.New("gossip join failed")
	}
	return nil
}

// PeerState is a booture's state as seen from here.
type PeerState string

const (
	StateAlive   PeerState = "alive"
	StateSuspect PeerState = "suspect"
	StateDead    PeerState = "dead"
	StateLeft    PeerState = "left"
)

// Up tells whether gossip still counts a booture in this state in the mesh
// (alive, or suspect until it answers or is declared dead): it is routed,
// holds its site, and is listed.
func (s PeerState) Up() bool { return s == StateAlive || s == StateSuspect }

// Peer is another booture of the mesh as seen from here.
type Peer struct {
	Record
	State PeerState
	// SiteLost is set when this booture holds a site that another alive
	// booture won; it is not routed until it moves to a free site.
	SiteLost bool
	// UpSince is when gossip last saw it come up (zero if not up).
	UpSince time.Time
}

// View is a consistent snapshot of the mesh as this booture sees it.
type View struct {
	Self      Record
	MeshID    MeshID
	ULA       netip.Prefix
	Site      Site
	Epoch     uint64
	Peers     []Peer // sorted by name
	Conflicts []Conflict
	// Expelled is set when the other bootures refused this one: it was
	// expelled from the mesh.
	Expelled bool
	// Gossip traffic since the daemon started.
	GossipBytesIn, GossipBytesOut uint64
}

// Peer returns the peer named name.
func (v View) Peer(name string) (Peer, bool) {
	for _, p := range v.Peers {
		if p.Name == name {
			return p, true
		}
	}
	return Peer{}, false
}

// View returns a snapshot of the mesh.
func (n *Node) View() View {
	states := n.memberStates()
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.viewLocked(states)
}

// memberStates returns memberlist's state of every booture it knows. It
// must not be called with n.mu held (memberlist calls our delegates under
// its own lock).
func (n *Node) memberStates() map[string]PeerState {
	ml := n.memberlist()
	if ml == nil {
		return make(map[string]PeerState)
	}
	if st, ok := nodeStates(ml); ok {
		return st
	}
	out := make(map[string]PeerState)
	for _, m := range ml.Members() {
		out[m.Name] = StateAlive
	}
	return out
}

// refreshStates records bootures that left (so that they stay "left" after
// memberlist forgets them) and logs state changes once. It returns the
// states it read.
func (n *Node) refreshStates() map[string]PeerState {
	states := n.memberStates()
	now := n.now().UnixMilli()
	n.mu.Lock()
	defer n.mu.Unlock()
	var left []Record // marked left here, set after the loop
	for k, r := range n.roster.all() {
		s, ok := states[r.Name]
		if !ok {
			s = StateDead
		}
		if s == StateLeft && !r.Left() {
			r.LeftAt = max(now, r.Gen+1)
			left = append(left, r)
			n.dirty = true
		}
		if r.Left() {
			s = StateLeft
		}
		if prev := n.logged[k]; prev != s {
			switch s {
			case StateLeft:
				n.log.Info("booture left the mesh", "peer", r.Name)
			case StateDead:
				if prev.Up() {
					n.log.Warn("booture is unreachable (dead)", "peer", r.Name)
				}
			case StateSuspect:
				n.log.Info("booture is suspect (not answering)", "peer", r.Name)
			}
		}
		n.logged[k] = s
	}
	for _, r := range left {
		n.roster.set(r)
	}
	n.noteViewLocked(states)
	return states
}

func (n *Node) viewLocked(states map[string]PeerState) View {
	v := View{
		Self:           n.state.Self,
		MeshID:         n.state.Creds.MeshID,
		ULA:            n.state.Creds.MeshID.ULA(),
		Epoch:          n.state.Creds.Epoch,
		Conflicts:      append([]Conflict(nil), n.state.Conflicts...),
		Expelled:       n.state.Expelled,
		GossipBytesIn:  n.counters.In.Load(),
		GossipBytesOut: n.counters.Out.Load(),
	}
	v.Site = SiteOf(v.ULA, n.state.Self.Site)
	for _, r := range n.roster.all() {
		p := Peer{Record: r, State: StateDead, UpSince: n.liveKeys[r.PublicKey]}
		switch s, ok := states[r.Name]; {
		case ok && s != StateDead:
			p.State = s
		case r.Left():
			p.State = StateLeft
		}
		v.Peers = append(v.Peers, p)
	}
	sort.Slice(v.Peers, func(i, j int) bool { return v.Peers[i].Name < v.Peers[j].Name })
	markSiteLosers(&v)
	return v
}

// settleConflicts moves this booture to a free site when another live
// booture won the site it holds (two invitations redeemed on both sides of
// a partition can hand out the same site).
func (n *Node) settleConflicts(states map[string]PeerState) {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	n.mu.Lock()
	c := n.roster.contest(n.state.Self, func(r Record) bool { return states[r.Name].Up() })
	if !c.contested {
		n.mu.Unlock()
		return
	}
	// Record conflicts seen between others, once each, for status.
	var winner string
	self := n.state.Self
	for _, r := range n.roster.all() {
		if !states[r.Name].Up() {
			continue
		}
		if r.Site == self.Site && c.winner[r.Site].key == r.PublicKey {
			winner = r.Name
		}
		if c.lost(r) {
			n.noteConflictLocked(r.Site, "", r.Name, 0)
		}
	}
	if !c.lost(self) {
		n.mu.Unlock()
		return
	}
	newSite, err := n.roster.freeSite(n.state.Self.Site)
	if err != nil {
		k := conflictKey{self.Site, winner}
		again := n.unsettled == k
		n.unsettled = k
		n.mu.Unlock()
		if !again {
			n.log.Error("site conflict cannot be settled", "site", self.Site, "winner", winner, "err", err)
		}
		return
	}
	old := self.Site
	now := n.now()
	n.state.Self.Site = newSite
	n.state.Self.SiteClaim = now.UnixMilli()
	n.state.Self.Gen = nextGen(n.state.Self.Gen, now)
	n.noteConflictLocked(old, winner, n.state.Self.Name, newSite)
	err = n.saveLocked()
	ml := n.gossipList
	n.mu.Unlock()
	n.log.Warn("site conflict: another booture holds our site with an earlier claim; moved to a free site (members need their new configuration)",
		"site", old, "winner", winner, "new_site", newSite)
	if err != nil {
		n.log.Error("saving mesh state", "err", err)
	}
	if ml != nil {
		ml.UpdateNode(time.Second)
	}
	n.cfg.OnChange()
}

// conflictKey names a conflict: the site, and the booture that lost it
// (or, for one that cannot be settled, won it).
type conflictKey struct {
	site int
	name string
}

// noteConflictLocked records a conflict once.
func (n *Node) noteConflictLocked(site int, winner, loser string, newSite int) {
	if n.noted == nil {
		n.noted = make(map[conflictKey]bool)
	}
	k := conflictKey{site, loser}
	if n.noted[k] && winner == "" {
		return
	}
	n.noted[k] = true
	for i := range n.state.Conflicts {
		c := &n.state.Conflicts[i]
		if c.Site == site && c.Loser == loser {
			if winner != "" && c.Winner == "" {
				c.Winner, c.NewSite = winner, newSite
				n.dirty = true
			}
			return
		}
	}
	if winner == "" {
		n.log.Warn("site conflict between two bootures", "site", site, "loser", loser)
	}
	n.state.Conflicts = append(n.state.Conflicts, Conflict{Site: site, Winner: winner, Loser: loser, NewSite: newSite, At: n.now().UnixMilli()})
	n.dirty = true
}

// GossipKeyCount returns how many gossip keys are currently accepted (the
// current one plus any kept for a grace period after a change). For tests and
// diagnostics; the keys themselves are never exposed.
func (n *Node) GossipKeyCount() int {
	ml := n.memberlist()
	n.mu.Lock()
	defer n.mu.Unlock()
	if ml == nil {
		return 0
	}
	return 1 + len(n.oldGossipKeys)
}
