package mesh

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/booture/booture/catalog"
	"github.com/booture/booture/internal/names"
	"github.com/booture/booture/key"
)

// The service catalog replicates through gossip in two steps. Each booture
// puts the version of its own catalog in its node record (a few bytes, which
// memberlist spreads with every record update); a booture that sees a newer
// version than it holds asks the owner for its catalog with a reliable,
// encrypted gossip message, and the owner answers the same way. So a health
// change costs one small record update plus one exchange per booture, and
// nobody carries the whole mesh's catalog in its periodic state exchange.
//
// Messages are versioned JSON: a daemon ignores fields it does not know, and
// an old daemon ignores the message types it does not know, so bootures of
// different versions interoperate (an old one simply lists no services).
//
// Since version 2 a catalog carries its owner's signature (sign.go): any
// booture could otherwise answer in another's name. An unsigned catalog is
// taken only from a booture whose record is unsigned too (an older daemon,
// see upsertLocked).

// Catalog message types.
const (
	msgCatalogRequest byte = 2
	msgCatalog        byte = 3
)

// Limits on a catalog received from another booture.
const (
	maxServicesPerBooture = 64
	maxCatalogBytes       = 64 << 10
)

type catalogRequest struct {
	V    int    `json:"v"`
	From string `json:"from"` // name of the requester, to answer to
}

type catalogMsg struct {
	V        int               `json:"v"`
	From     string            `json:"from"`
	Key      key.PublicKey     `json:"key"`
	Version  int64             `json:"version"`
	Services []catalog.Service `json:"services"`
	// Signed is set when the message carried a valid signature.
	Signed bool `json:"-"`
}

// catalogWire is a catalog message as sent: the services are signed as
// their exact bytes.
type catalogWire struct {
	V        int             `json:"v"`
	From     string          `json:"from"`
	Key      key.PublicKey   `json:"key"`
	Version  int64           `json:"version"`
	Services json.RawMessage `json:"services"`
	Sig      Signature       `json:"sig,omitzero"`
}

// catalogVersion is the version of the catalog messages this daemon sends.
const catalogVersion = 2

// encodeCatalog encodes and signs a catalog message.
func encodeCatalog(priv key.PrivateKey, from string, version int64, services []catalog.Service, count *atomic.Int64) ([]byte, error) {
	if services == nil {
		services = []catalog.Service{}
	}
	raw, err := json.Marshal(services)
	if err != nil {
		return nil, err
	}
	pub := priv.Public()
	w := catalogWire{V: catalogVersion, From: from, Key: pub, Version: version, Services: raw,
		Sig: sign(priv, catalogMessage(from, pub, version, raw), count)}
	return json.Marshal(w)
}

// peerCatalog is another booture's catalog as last received.
type peerCatalog struct {
	version   int64
	services  []catalog.Service
	requested time.Time // last request sent, to retry lost answers
	asked     int64     // version announced when that request was sent
}

// SetServices publishes this booture's services (with their health) to the
// mesh. It is cheap to call with an unchanged list.
func (n *Node) SetServices(svcs []catalog.Service) {
	svcs = slices.Clone(svcs)
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].Name < svcs[j].Name })
	n.mu.Lock()
	if n.servicesSet && slices.Equal(svcs, n.localServices) {
		n.mu.Unlock()
		return
	}
	now := n.now()
	n.localServices, n.servicesSet = svcs, true
	n.catalogSent = nil
	// Version 0 means "no services": nobody needs to ask.
	n.state.Self.Catalog = 0
	if len(svcs) > 0 {
		n.state.Self.Catalog = nextGen(n.state.Self.Catalog, now)
	}
	n.state.Self.Gen = nextGen(n.state.Self.Gen, now)
	ml := n.gossipList
	n.mu.Unlock()
	if ml != nil {
		// Spreads the new catalog version with our record.
		go ml.UpdateNode(time.Second)
	}
}

// Services returns the catalog of the whole mesh: this booture's services
// and those of every other booture that is up or unreachable (the latter
// with health unknown). Bootures that left or were expelled are not listed.
func (n *Node) Services() []catalog.Service {
	states := n.memberStates()
	n.mu.Lock()
	defer n.mu.Unlock()
	out := slices.Clone(n.localServices)
	for k, pc := range n.catalogs {
		r, ok := n.roster.get(k)
		if !ok || r.Left() {
			continue
		}
		s := states[r.Name]
		for _, svc := range pc.services {
			if s != StateAlive && s != StateSuspect {
				svc.Health = catalog.HealthUnknown
				svc.Message = fmt.Sprintf("booture %s is unreachable", r.Name)
			}
			out = append(out, svc)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Booture != out[j].Booture {
			return out[i].Booture < out[j].Booture
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// catalogWantedLocked reports whether r announces a catalog other than the
// one held, and no request for it is pending. A booture announcing no
// catalog (version 0) has its old one dropped.
func (n *Node) catalogWantedLocked(r Record) bool {
	pc := n.catalogs[r.PublicKey]
	if r.Catalog == 0 {
		if pc != nil && pc.version != 0 {
			pc.version, pc.services = 0, nil
		}
		return false
	}
	if pc == nil {
		return true
	}
	// Ask at once for a version not asked for yet; ask again for the same
	// one only if the answer seems lost.
	return pc.version != r.Catalog && (pc.asked != r.Catalog || n.now().Sub(pc.requested) > 2*time.Second)
}

// requestCatalogs asks every live booture whose catalog is out of date for
// its catalog.
func (n *Node) requestCatalogs() {
	ml := n.memberlist()
	if ml == nil {
		return
	}
	n.mu.Lock()
	wanted := make(map[string]bool)
	for k, r := range n.roster.all() {
		if n.isLiveLocked(k) && n.catalogWantedLocked(r) {
			wanted[r.Name] = true
			pc := n.catalogs[k]
			if pc == nil {
				pc = &peerCatalog{}
				n.catalogs[k] = pc
			}
			pc.requested, pc.asked = n.now(), r.Catalog
		}
	}
	req, _ := json.Marshal(catalogRequest{V: 1, From: n.state.Self.Name})
	n.mu.Unlock()
	if len(wanted) == 0 {
		return
	}
	msg := append([]byte{msgCatalogRequest}, req...)
	// Spread the requests when many are due at once (a whole mesh
	// starting), rather than opening them all in the same instant.
	spread := time.Duration(len(wanted)) * 20 * time.Millisecond
	for _, m := range ml.Members() {
		if wanted[m.Name] {
			go func(m *memberlist.Node) {
				if spread > 0 {
					time.Sleep(rand.N(spread))
				}
				if err := ml.SendReliable(m, msg); err != nil {
					n.log.Debug("requesting a catalog", "peer", m.Name, "err", err)
				}
			}(m)
		}
	}
}

// handleCatalogRequest answers a request with our catalog.
func (n *Node) handleCatalogRequest(b []byte) {
	var req catalogRequest
	if err := json.Unmarshal(b, &req); err != nil || names.Check(req.From) != nil {
		n.log.Debug("dropping malformed catalog request")
		return
	}
	ml := n.memberlist()
	if ml == nil {
		return
	}
	n.mu.Lock()
	body, err := n.catalogAnswerLocked()
	n.mu.Unlock()
	if err != nil {
		n.log.Error("encoding our catalog", "err", err)
		return
	}
	for _, m := range ml.Members() {
		if m.Name == req.From {
			if err := ml.SendReliable(m, append([]byte{msgCatalog}, body...)); err != nil {
				n.log.Debug("sending our catalog", "peer", m.Name, "err", err)
			}
			return
		}
	}
}

// catalogAnswerLocked returns our catalog as sent, signed once per
// version: every booture asks for each version.
func (n *Node) catalogAnswerLocked() ([]byte, error) {
	self := n.state.Self
	if n.catalogSent == nil || n.catalogSentFor != self.Catalog || n.catalogSentName != self.Name {
		// SetServices drops it when the services change.
		b, err := encodeCatalog(n.privateKey, self.Name, self.Catalog, n.localServices, &n.signs)
		if err != nil {
			return nil, err
		}
		n.catalogSent, n.catalogSentFor, n.catalogSentName = b, self.Catalog, self.Name
	}
	return n.catalogSent, nil
}

// handleCatalog stores a catalog received from its owner.
func (n *Node) handleCatalog(b []byte) {
	msg, err := decodeCatalog(&n.verifier, b)
	if err != nil {
		n.log.Warn("dropping malformed service catalog", "err", err)
		return
	}
	n.mu.Lock()
	r, ok := n.roster.get(msg.Key)
	if !ok || r.Name != msg.From {
		n.mu.Unlock()
		return
	}
	if !msg.Signed && !r.Sig.IsZero() {
		first := n.firstLocked(msg.Key, "unsigned catalog")
		n.mu.Unlock()
		if first {
			n.log.Warn("dropping an unsigned catalog in the name of a booture that signs its own (a forgery, or a bug)", "peer", msg.From)
		}
		return
	}
	pc := n.catalogs[msg.Key]
	if pc == nil {
		pc = &peerCatalog{}
		n.catalogs[msg.Key] = pc
	}
	// Versions grow with time on their owner; take the announced one.
	changed := msg.Version != pc.version && msg.Version == r.Catalog
	if changed {
		pc.version, pc.services = msg.Version, msg.Services
	}
	n.mu.Unlock()
	if changed {
		n.cfg.OnChange()
	}
}

// decodeCatalog parses and checks a catalog message from another booture:
// every service must belong to its sender and carry valid fields, and a
// signature, if any, must be the key's (version 2 messages must have one).
func decodeCatalog(v *verifier, b []byte) (catalogMsg, error) {
	var msg catalogMsg
	if len(b) > maxCatalogBytes {
		return msg, errors.New("catalog too large")
	}
	var w catalogWire
	if err := json.Unmarshal(b, &w); err != nil {
		return msg, err
	}
	msg = catalogMsg{V: w.V, From: w.From, Key: w.Key, Version: w.Version}
	if msg.V < 1 {
		return msg, fmt.Errorf("catalog version %d is not supported", msg.V)
	}
	if len(w.Services) > 0 && string(w.Services) != "null" {
		if err := json.Unmarshal(w.Services, &msg.Services); err != nil {
			return msg, fmt.Errorf("catalog services: %w", err)
		}
	}
	if msg.V >= catalogVersion || !w.Sig.IsZero() {
		if !v.verify(w.Key, catalogMessage(w.From, w.Key, w.Version, w.Services), w.Sig) {
			return msg, fmt.Errorf("catalog of %s: %w", w.From, errBadSignature)
		}
		msg.Signed = true
	}
	if err := names.Check(msg.From); err != nil {
		return msg, err
	}
	if msg.Key.IsZero() || msg.Version <= 0 {
		return msg, errors.New("catalog without key or version")
	}
	if len(msg.Services) > maxServicesPerBooture {
		return msg, fmt.Errorf("%d services in one catalog", len(msg.Services))
	}
	for _, s := range msg.Services {
		if err := checkService(s, msg.From); err != nil {
			return msg, err
		}
	}
	return msg, nil
}

func checkService(s catalog.Service, booture string) error {
	if err := names.Check(s.Name); err != nil {
		return fmt.Errorf("service name: %w", err)
	}
	if s.Booture != booture {
		return fmt.Errorf("service %s claims booture %q, sent by %q", s.Name, s.Booture, booture)
	}
	if _, err := catalog.ParseAccess(string(s.Access)); err != nil {
		return err
	}
	switch s.Health {
	case catalog.HealthUnknown, catalog.HealthHealthy, catalog.HealthDegraded, catalog.HealthUnhealthy:
	default:
		return fmt.Errorf("service %s: invalid health %q", s.Name, s.Health)
	}
	u, err := url.Parse(s.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("service %s: invalid URL %q", s.Name, s.URL)
	}
	if len(s.Message) > 512 {
		return fmt.Errorf("service %s: message too long", s.Name)
	}
	return nil
}
