// Package host runs the daemon's plugins: it finds and pins their binaries,
// starts each one (go-plugin over gRPC, mutual TLS, a minimal environment,
// killed with the daemon), configures it with its services, polls its
// health, restarts it with backoff when it crashes or hangs, swaps it for a
// newly installed binary without dropping a request, and offers the
// daemon's proxy the resulting routes and its portal the services' health.
//
// Bad input hurts only the service concerned: an unknown plugin, a binary
// whose checksum changed, a plugin that fails its handshake or returns
// invalid routes each show a clear error in List and the log, and every
// other service keeps working.
package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/booture/booture/catalog"
	"github.com/booture/booture/internal/names"
	"github.com/booture/booture/internal/store"
	"github.com/booture/booture/plugins/internal/wire"
)

// MeshInfo answers plugins' questions about the mesh (served to them
// through go-plugin's broker). The daemon implements it over its gossip.
type MeshInfo interface {
	// Bootures lists the bootures of the mesh, this one included.
	Bootures(ctx context.Context) ([]catalog.Booture, error)
	// Services lists the mesh's service catalog.
	Services(ctx context.Context) ([]catalog.Service, error)
}

// Mesh is this booture's context, given to every plugin.
type Mesh struct {
	Booture string // this booture's name (DNS label)
	Domain  string // empty means catalog.DefaultDomain
	IPv4    netip.Addr
	IPv6    netip.Addr
}

// Timing tunes the manager; zero fields take the defaults in brackets.
type Timing struct {
	StartTimeout     time.Duration // handshake of a starting plugin [10s]
	CallTimeout      time.Duration // Describe, Health and Stop; past it a plugin is hung [5s]
	ConfigureTimeout time.Duration // Configure [30s]
	HealthInterval   time.Duration // between health polls [10s]
	BackoffMin       time.Duration // first restart delay, doubled per failure [500ms]
	BackoffMax       time.Duration // longest restart delay [1m]
	MaxFailures      int           // consecutive failures that end in "failed" [5]
	StableAfter      time.Duration // running this long forgets past failures [1m]
	ReloadTimeout    time.Duration // for the new binary to become ready [1m]
	DrainDelay       time.Duration // old plugin kept after a swap, for requests in flight [1s]
}

func (t Timing) withDefaults() Timing {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.StartTimeout, 10*time.Second)
	def(&t.CallTimeout, 5*time.Second)
	def(&t.ConfigureTimeout, 30*time.Second)
	def(&t.HealthInterval, 10*time.Second)
	def(&t.BackoffMin, 500*time.Millisecond)
	def(&t.BackoffMax, time.Minute)
	def(&t.StableAfter, time.Minute)
	def(&t.ReloadTimeout, time.Minute)
	def(&t.DrainDelay, time.Second)
	if t.MaxFailures <= 0 {
		t.MaxFailures = 5
	}
	return t
}

// Options configure a Manager.
type Options struct {
	// StateDir holds the pins (StateDir/plugins/pins.json, mode 0600) and
	// the installed binaries (StateDir/plugins/bin). Required.
	StateDir string
	// PluginDirs are searched for booture-plugin-NAME binaries after the
	// managed directory, e.g. /usr/lib/booture/plugins. A binary found
	// there is pinned on first use.
	PluginDirs []string
	// Specs are the services declared in the config.
	Specs []catalog.Spec
	// Mesh is this booture's context. Mesh.Booture is required.
	Mesh Mesh
	// MeshInfo answers plugins' callbacks; nil means plugins get empty
	// lists.
	MeshInfo MeshInfo
	// Logger receives the manager's and the plugins' logs; nil discards.
	Logger *slog.Logger
	// SocketDir is where plugins create their unix sockets (each start in
	// a directory of its own inside it); it must be short (socket paths are
	// limited to ~107 bytes), and every directory above it must let User
	// pass. Default: $TMPDIR/booture-plugins.
	SocketDir string
	// User is who plugins run as (see LookupUser); nil, or a daemon that
	// is not root, runs them as the daemon's user. They then read only
	// the files that user may read, with an empty environment and / as
	// their working directory.
	User *User
	// PluginLogLevel is passed to plugins (debug, info, warn, error).
	// Default: info.
	PluginLogLevel string
	// Timing tunes timeouts and backoff.
	Timing Timing
}

// State is a plugin's lifecycle state, as `booture plugin list` shows it.
type State string

const (
	StateStarting State = "starting" // being started or configured
	StateRunning  State = "running"  // configured and polled
	StateBackoff  State = "backoff"  // crashed or hung; waiting to restart
	StateFailed   State = "failed"   // gave up; Install+Reload or Reload to retry
	StateStopped  State = "stopped"  // not running (unused, or the manager stopped)
)

// PluginInfo is a plugin as `booture plugin list --json` prints it.
type PluginInfo struct {
	Name      string   `json:"name"`
	Version   string   `json:"version,omitempty"`
	Path      string   `json:"path,omitempty"`
	SHA256    string   `json:"sha256,omitempty"`
	State     State    `json:"state"`
	PID       int      `json:"pid,omitempty"`
	Restarts  int      `json:"restarts"`
	LastError string   `json:"last_error,omitempty"`
	Services  []string `json:"services"`
	Notes     []string `json:"notes,omitempty"`
}

// Manager runs the plugins of one daemon. Its methods are safe for
// concurrent use.
type Manager struct {
	opts     Options
	t        Timing
	log      *slog.Logger
	mesh     wire.Mesh
	binDir   string
	pinsPath string
	changes  chan struct{}

	installMu sync.Mutex     // serializes Install
	drain     sync.WaitGroup // old processes stopping after a Reload

	mu       sync.Mutex
	pins     map[string]pin
	plugins  map[string]*supervised // plugins used by at least one service
	services []*service             // in config order
	running  bool
	started  bool
}

// service is one declared service and what is known of it.
type service struct {
	spec   wire.Spec
	plugin string
	err    error // invalid declaration: never sent to a plugin

	health  catalog.Health
	message string
	routes  []catalog.Route // last valid routes; kept while the plugin restarts
	refused error           // why the plugin's routes were refused
}

// New checks opts and loads the pins. Invalid service declarations do not
// fail New: each is reported on its own service (Services, List, log).
func New(opts Options) (*Manager, error) {
	if opts.StateDir == "" {
		return nil, errors.New("plugin host: no state directory")
	}
	if err := names.Check(opts.Mesh.Booture); err != nil {
		return nil, fmt.Errorf("plugin host: booture name: %w", err)
	}
	if opts.Mesh.Domain == "" {
		opts.Mesh.Domain = catalog.DefaultDomain
	}
	if opts.SocketDir == "" {
		opts.SocketDir = filepath.Join(os.TempDir(), "booture-plugins")
	}
	// Room for "/plugin" and os.CreateTemp's random suffix.
	if len(opts.SocketDir) > 80 {
		return nil, fmt.Errorf("plugin host: socket dir %s is longer than 80 bytes", opts.SocketDir)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		opts:     opts,
		t:        opts.Timing.withDefaults(),
		log:      log,
		mesh:     wire.Mesh{Booture: opts.Mesh.Booture, Domain: opts.Mesh.Domain, IPv4: opts.Mesh.IPv4, IPv6: opts.Mesh.IPv6},
		binDir:   filepath.Join(opts.StateDir, "plugins", "bin"),
		pinsPath: filepath.Join(opts.StateDir, "plugins", "pins.json"),
		changes:  make(chan struct{}, 1),
		plugins:  map[string]*supervised{},
	}
	if err := store.EnsureDir(filepath.Dir(m.pinsPath), 0o700); err != nil {
		return nil, fmt.Errorf("plugin host: %w", err)
	}
	if err := m.loadPins(); err != nil {
		return nil, fmt.Errorf("plugin host: %w", err)
	}
	m.declare(opts.Specs)
	return m, nil
}

// declare checks the declared services and groups them by plugin.
func (m *Manager) declare(specs []catalog.Spec) {
	used := map[string]bool{}
	for _, s := range specs {
		svc := &service{plugin: s.Plugin, health: catalog.HealthUnknown}
		name := s.Name
		if name == "" {
			name = s.Plugin
		}
		access := s.Access
		if access == "" {
			access = catalog.AccessMembers
		}
		svc.spec = wire.Spec{Name: name, Host: m.mesh.ServiceHost(name), Upstream: s.Upstream, Access: access, Settings: s.Settings}
		switch err := names.Check(s.Plugin); {
		case err != nil:
			svc.err = fmt.Errorf("plugin name: %w", err)
		case names.Check(name) != nil:
			svc.err = fmt.Errorf("service name: %w", names.Check(name))
		case used[name]:
			svc.err = fmt.Errorf("service name %q is declared twice", name)
		}
		if svc.err == nil {
			if _, err := catalog.ParseAccess(string(access)); err != nil {
				svc.err = err
			} else if s.Upstream != "" {
				svc.err = wire.CheckUpstream(s.Upstream)
			}
		}
		used[name] = true
		if svc.err != nil {
			svc.health, svc.message = catalog.HealthUnhealthy, "invalid service: "+svc.err.Error()
			m.log.Error("invalid service", "service", name, "plugin", s.Plugin, "error", svc.err)
		} else {
			sp := m.plugins[s.Plugin]
			if sp == nil {
				sp = &supervised{name: s.Plugin, state: StateStopped, reload: make(chan reloadReq), exited: make(chan struct{})}
				m.plugins[s.Plugin] = sp
			}
			sp.services = append(sp.services, svc)
			svc.message = "plugin not started"
		}
		m.services = append(m.services, svc)
	}
}

// Changes fires (capacity 1, coalescing) when routes or health change.
func (m *Manager) Changes() <-chan struct{} { return m.changes }

func (m *Manager) notify() {
	select {
	case m.changes <- struct{}{}:
	default:
	}
}

// Routes returns the routes the daemon's proxy should carry, sorted by
// host and path prefix. Each request may look them up afresh: the slice is
// a copy.
func (m *Manager) Routes() []catalog.Route {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []catalog.Route
	for _, s := range m.services {
		out = append(out, s.routes...)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Host != out[j].Host {
			return out[i].Host < out[j].Host
		}
		return out[i].PathPrefix < out[j].PathPrefix
	})
	return out
}

// Services returns this booture's services with their health, in config
// order, for the catalog and the portal.
func (m *Manager) Services() []catalog.Service {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]catalog.Service, 0, len(m.services))
	for _, s := range m.services {
		out = append(out, catalog.Service{
			Name: s.spec.Name, Booture: m.mesh.Booture, URL: "http://" + s.spec.Host + "/",
			Access: s.spec.Access, Health: s.health, Message: s.message,
		})
	}
	return out
}

// List returns every plugin known (used by a service, pinned or found in a
// plugin directory), sorted by name.
func (m *Manager) List() []PluginInfo {
	discovered := m.discover()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []PluginInfo
	for _, name := range m.knownNamesLocked(discovered) {
		pi := PluginInfo{Name: name, State: StateStopped, Path: discovered[name], Services: []string{}}
		if p, ok := m.pins[name]; ok {
			pi.Path, pi.SHA256 = p.Path, p.SHA256
		}
		if sp := m.plugins[name]; sp != nil {
			pi.State, pi.PID, pi.Restarts, pi.LastError = sp.state, sp.pid, sp.restarts, sp.lastErr
			pi.Version = sp.version
			pi.Notes = append([]string(nil), sp.notes...)
			if sp.path != "" {
				pi.Path = sp.path
			}
		}
		for _, s := range m.services {
			if s.plugin != name {
				continue
			}
			pi.Services = append(pi.Services, s.spec.Name)
			if s.err != nil && pi.LastError == "" {
				pi.LastError = "service " + s.spec.Name + ": " + s.err.Error()
			}
		}
		out = append(out, pi)
	}
	return out
}

// Run starts the plugins used by the declared services and supervises
// them until ctx ends; then it stops them all and returns. It may be
// called once.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return errors.New("plugin host: Run called twice")
	}
	m.started, m.running = true, true
	sps := make([]*supervised, 0, len(m.plugins))
	for _, sp := range m.plugins {
		sps = append(sps, sp)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, sp := range sps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.supervise(ctx, sp)
		}()
	}
	<-ctx.Done()
	wg.Wait()
	m.drain.Wait()
	m.mu.Lock()
	m.running = false
	m.mu.Unlock()
	return nil
}

// Reload swaps plugin name to its currently pinned binary (after Install):
// it starts the new process, waits until it is configured and healthy,
// switches the routes at once, then stops the old process. The proxy
// carries the traffic, so no request is dropped. When the plugin is not
// running (backoff, failed), Reload starts it now. On error the old
// process keeps serving.
func (m *Manager) Reload(ctx context.Context, name string) error {
	m.mu.Lock()
	sp, running := m.plugins[name], m.running
	m.mu.Unlock()
	if sp == nil {
		return fmt.Errorf("reloading %s: no service uses this plugin", name)
	}
	if !running {
		return fmt.Errorf("reloading %s: the plugin host is not running", name)
	}
	req := reloadReq{ctx: ctx, done: make(chan error, 1)}
	select {
	case sp.reload <- req:
	case <-sp.exited:
		return fmt.Errorf("reloading %s: the plugin host is stopping", name)
	case <-ctx.Done():
		return fmt.Errorf("reloading %s: %w", name, ctx.Err())
	}
	select {
	case err := <-req.done:
		if err != nil {
			return fmt.Errorf("reloading %s: %w", name, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("reloading %s: %w", name, ctx.Err())
	}
}
