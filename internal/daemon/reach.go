package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/booture/booture/internal/store"
	"github.com/booture/booture/key"
	"github.com/booture/booture/netcfg"
)

// When the daemon restarts (an embedded WireGuard loses its sessions) or a
// member is enabled again, the member's WireGuard app only notices after its
// own timers, 15 to 25 seconds later. The booture can do better: it
// remembers where each member was last seen and, for reachWindow, plans the
// member's peer with that endpoint and a keepalive, which makes the booture
// start the handshake at once. Afterwards the plan leaves the endpoint to
// WireGuard, which follows a roaming member by itself.

// EndpointsFile remembers members' last endpoints (best effort, 0600).
const EndpointsFile = "member-endpoints.json"

// reachWindow is how long a returning member is reached for.
const reachWindow = 30 * time.Second

// reacher tracks members' endpoints and who is being reached.
type reacher struct {
	path string

	mu        sync.Mutex
	endpoints map[key.PublicKey]netip.AddrPort
	until     map[key.PublicKey]time.Time
	dirty     bool
}

func newReacher(stateDir string) *reacher {
	r := &reacher{
		path:      filepath.Join(stateDir, EndpointsFile),
		endpoints: make(map[key.PublicKey]netip.AddrPort),
		until:     make(map[key.PublicKey]time.Time),
	}
	if saved, err := readEndpoints(r.path); err == nil {
		for k, ep := range saved {
			if pub, err := key.ParsePublicKey(k); err == nil && ep.IsValid() {
				r.endpoints[pub] = ep
			}
		}
	}
	return r
}

// reachAll starts reaching every member with a known endpoint (at start).
func (r *reacher) reachAll(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.endpoints {
		r.until[k] = now.Add(reachWindow)
	}
}

// reach starts reaching one member (enabled again).
func (r *reacher) reach(k key.PublicKey, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.endpoints[k]; ok {
		r.until[k] = now.Add(reachWindow)
	}
}

// endpoint returns where to reach member k now, if it is being reached,
// and when its window ends.
func (r *reacher) endpoint(k key.PublicKey, now time.Time) (netip.AddrPort, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	until, ok := r.until[k]
	if !ok || !now.Before(until) {
		delete(r.until, k)
		return netip.AddrPort{}, time.Time{}
	}
	return r.endpoints[k], until
}

// observe records the endpoints WireGuard knows for the given members.
func (r *reacher) observe(seen map[key.PublicKey]netip.AddrPort) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, ep := range seen {
		if ep.IsValid() && r.endpoints[k] != ep {
			r.endpoints[k] = ep
			r.dirty = true
		}
	}
}

// forget drops a removed member.
func (r *reacher) forget(k key.PublicKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.endpoints[k]; ok {
		delete(r.endpoints, k)
		delete(r.until, k)
		r.dirty = true
	}
}

// save writes the endpoints if they changed.
func (r *reacher) save() error {
	r.mu.Lock()
	if !r.dirty {
		r.mu.Unlock()
		return nil
	}
	out := make(map[string]netip.AddrPort, len(r.endpoints))
	for k, ep := range r.endpoints {
		out[k.String()] = ep
	}
	r.dirty = false
	r.mu.Unlock()
	return store.WriteJSON(r.path, endpointsFile{Version: endpointsVersion, Endpoints: out}, 0o600)
}

// watchMembers records where members are seen, every period (a WireGuard
// dump, and a file write only when an endpoint changed), until ctx ends
// (and once more at the end).
func (d *Daemon) watchMembers(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		done := false
		select {
		case <-ctx.Done():
			done = true
		case <-t.C:
		}
		seen := make(map[key.PublicKey]netip.AddrPort)
		ms := d.members.List()
		var live map[key.PublicKey]netcfg.PeerState
		if len(ms) > 0 {
			// The dump lists every mesh peer too: with many peers and
			// no member it was most of this booture's work at rest.
			live = d.livePeers(context.Background())
		}
		for _, m := range ms {
			if p, ok := live[m.PublicKey]; ok && p.Endpoint.IsValid() {
				seen[m.PublicKey] = p.Endpoint
			}
		}
		d.reach.observe(seen)
		if err := d.reach.save(); err != nil {
			d.log.Warn("saving members' endpoints", "err", err)
		}
		if done {
			return
		}
	}
}

// endpointsVersion is the version of the endpoints file this daemon
// writes. Version 0 (the first release) was the bare map.
const endpointsVersion = 1

type endpointsFile struct {
	Version   int                       `json:"version"`
	Endpoints map[string]netip.AddrPort `json:"endpoints"`
}

// readEndpoints reads the endpoints file in its current or first format;
// a newer one is refused (it is a cache: the caller starts without it).
func readEndpoints(path string) (map[string]netip.AddrPort, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var head struct {
		Version *int `json:"version"`
	}
	if json.Unmarshal(data, &head) != nil || head.Version == nil {
		var old map[string]netip.AddrPort
		if err := json.Unmarshal(data, &old); err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		return old, nil
	}
	if *head.Version > endpointsVersion {
		return nil, fmt.Errorf("reading %s: version %d was written by a newer booture", path, *head.Version)
	}
	var f endpointsFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return f.Endpoints, nil
}
