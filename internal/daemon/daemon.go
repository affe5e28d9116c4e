// Package daemon wires booture's parts into the running daemon: the mesh
// node (gossip), the VPN member registry, the reconciler that applies
// mesh.Plan through a netcfg.Applier, the admin API on its unix socket, the
// plugin host and the gateway, and the metrics endpoint. cmd/bootured only
// parses the configuration and calls Run; tests call Run with a fake
// applier and loopback gossip.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/booture/booture/gateway"
	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/internal/config"
	"github.com/booture/booture/internal/memtune"
	"github.com/booture/booture/internal/store"
	"github.com/booture/booture/key"
	"github.com/booture/booture/members"
	"github.com/booture/booture/mesh"
	"github.com/booture/booture/netcfg"
	"github.com/booture/booture/plugins/host"
)

// Version is the daemon's version, set at build time with
// -ldflags "-X github.com/booture/booture/internal/daemon.Version=...".
var Version = "0.1.0-dev"

// KeyFile is the name of the private key file in the state directory.
const KeyFile = "private.key"

// Options configures Run.
type Options struct {
	Config config.Config
	Logger *slog.Logger
	// NewApplier makes the network applier; nil means the Linux one.
	NewApplier func(log *slog.Logger, cfg config.Config) (netcfg.Applier, error)
	// AnyGossipPort binds any free gossip port instead of the
	// configured one (tests: many daemons share loopback); the port stays
	// the same across gossip restarts.
	AnyGossipPort bool
	// RejoinInterval overrides the mesh's retry period (tests).
	RejoinInterval time.Duration
	// Ready, if set, is called once the daemon serves its API.
	Ready func(*Daemon)
	// DisableGateway leaves out the HTTP proxy and DNS server (in-process
	// tests, where many daemons share one network namespace).
	DisableGateway bool
}

// Daemon is a running booture daemon.
type Daemon struct {
	cfg      config.Config
	log      *slog.Logger
	priv     key.PrivateKey
	node     *mesh.Node
	members  *members.Registry
	reach    *reacher
	applier  netcfg.Applier
	rec      *reconciler
	resets   peerResets // the reconciler's goroutine only
	registry *prometheus.Registry
	adv      advertised

	apiListener net.Listener
	plugins     *host.Manager
	gw          *gateway.Gateway // nil when disabled
	gwListen    *gatewayListen   // publisher goroutine only
	pubTrigger  chan struct{}
	ctx         context.Context // the daemon's lifetime, for background work
	wg          sync.WaitGroup

	// skipped are the bootures the plan leaves out for their keys, as
	// last logged (the reconciler's goroutine only, see desired).
	skipped map[key.PublicKey]bool
}

// advertised is where others reach this booture.
type advertised struct {
	gossip netip.Addr // underlay IP for gossip and bootures' WireGuard
	// member is the endpoint written into members' configs (host may be
	// a DNS name).
	memberHost string
	memberPort int
}

// Run starts the daemon and serves until ctx ends, then stops cleanly: the
// WireGuard interface and its routes are removed, the state is saved, and
// the other bootures see this one as dead until it comes back (stopping is
// not leaving).
func Run(ctx context.Context, opts Options) (err error) {
	d, err := start(ctx, opts)
	if err != nil {
		return err
	}
	return d.serve(ctx, opts)
}

func start(ctx context.Context, opts Options) (*Daemon, error) {
	cfg := opts.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{cfg: cfg, log: log, registry: prometheus.NewRegistry(), pubTrigger: make(chan struct{}, 1)}
	// The socket first: it tells a second daemon that one already runs,
	// before it touches any state.
	ln, err := api.Listen(cfg.Socket, cfg.SocketGroup)
	if err != nil {
		return nil, err
	}
	d.apiListener = ln
	ok := false
	defer func() {
		if !ok {
			ln.Close()
		}
	}()
	if err := store.EnsureDir(cfg.StateDir, 0o700); err != nil {
		return nil, err
	}
	priv, err := mesh.LoadOrCreateKey(filepath.Join(cfg.StateDir, KeyFile))
	if err != nil {
		return nil, err
	}
	d.priv = priv
	if d.adv, err = resolveAdvertise(cfg); err != nil {
		return nil, err
	}

	newApplier := opts.NewApplier
	if newApplier == nil {
		newApplier = linuxApplier
	}
	if d.applier, err = newApplier(log, cfg); err != nil {
		return nil, err
	}
	d.rec = newReconciler(d.applier, reconcileSteps{
		view:        func() mesh.View { return d.node.View() },
		moveMembers: d.moveMembers,
		desired:     d.desired,
		noteSkipped: d.noteSkipped,
		applied:     d.resets.applied,
	}, cfg.Resync, log.With("subsystem", "reconcile"))

	gossipPort := cfg.GossipPort
	if opts.AnyGossipPort {
		gossipPort = 0
	}
	d.node, err = mesh.New(mesh.Config{
		Name:              cfg.Name,
		StateDir:          cfg.StateDir,
		PrivateKey:        priv,
		Bind:              cfg.Listen,
		GossipPort:        gossipPort,
		Advertise:         d.adv.gossip,
		WireGuardEndpoint: netip.AddrPortFrom(d.adv.gossip, uint16(cfg.WGPort)),
		Profile:           cfg.GossipProfile,
		Version:           Version,
		Logger:            log.With("subsystem", "mesh"),
		OnChange:          func() { d.rec.Trigger(); d.triggerPublish() },
		RejoinInterval:    opts.RejoinInterval,
	})
	if err != nil {
		d.applier.Close()
		return nil, err
	}
	d.reach = newReacher(cfg.StateDir)
	d.reach.reachAll(time.Now())
	if err := d.openMembers(); err != nil {
		d.node.Close()
		d.applier.Close()
		return nil, err
	}
	if err := d.startPlugins(); err != nil {
		d.members.Close()
		d.node.Close()
		d.applier.Close()
		return nil, err
	}
	if !opts.DisableGateway {
		if err := d.newGateway(); err != nil {
			d.members.Close()
			d.node.Close()
			d.applier.Close()
			return nil, err
		}
	}
	d.registerMetrics()
	ok = true
	return d, nil
}

func (d *Daemon) serve(ctx context.Context, opts Options) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.ctx = ctx
	wg := &d.wg
	defer func() {
		cancel()
		wg.Wait()
		if cerr := d.node.Close(); cerr != nil && err == nil {
			err = cerr
		}
		if cerr := d.members.Close(); cerr != nil && err == nil {
			err = cerr
		}
		if cerr := d.applier.Close(); cerr != nil {
			d.log.Warn("removing the WireGuard interface", "err", cerr)
		}
		d.log.Info("bootured stopped")
	}()

	// Bring the interface up before gossip so that peers' first packets
	// find it.
	wg.Go(func() { d.rec.run(ctx) })
	if err := d.rec.applyNow(ctx); err != nil {
		return fmt.Errorf("setting up WireGuard: %w", err)
	}
	if err := d.node.Start(ctx); err != nil {
		return err
	}
	wg.Go(func() { memtune.Run(ctx, d.log.With("subsystem", "memory")) })
	wg.Go(func() { d.watchMembers(ctx, 2*time.Second) })
	wg.Go(func() {
		if err := d.plugins.Run(ctx); err != nil {
			d.log.Error("plugin host stopped", "err", err)
		}
	})
	wg.Go(func() { d.publishLoop(ctx) })

	ln := d.apiListener
	srv := &http.Server{Handler: api.Handler(d, d.log.With("subsystem", "api")), ReadHeaderTimeout: 10 * time.Second, ConnContext: api.ConnContext}
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(ln) }()
	defer srv.Close()

	if d.cfg.Metrics.IsValid() {
		mln, err := net.Listen("tcp", d.cfg.Metrics.String())
		if err != nil {
			return fmt.Errorf("metrics endpoint: %w", err)
		}
		msrv := &http.Server{Handler: d.metricsHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { serveErr <- msrv.Serve(mln) }()
		defer msrv.Close()
	}

	v := d.node.View()
	v4, v6 := v.Site.Booture()
	d.log.Info("bootured running", "name", d.cfg.Name, "version", Version, "mesh_ipv4", v4.String(), "mesh_ipv6", v6.String(),
		"socket", d.cfg.Socket, "public_key", d.priv.Public().String())
	if opts.Ready != nil {
		opts.Ready(d)
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-serveErr:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}

// resolveAdvertise works out the addresses others use to reach us.
func resolveAdvertise(cfg config.Config) (advertised, error) {
	a := advertised{gossip: cfg.Advertise.IP, memberHost: cfg.Advertise.Host, memberPort: cfg.Advertise.Port}
	if !a.gossip.IsValid() {
		a.gossip = cfg.Listen
	}
	if !a.gossip.IsValid() {
		ip, err := detectAdvertise()
		if err != nil {
			return a, err
		}
		a.gossip = ip
	}
	if a.memberHost == "" {
		a.memberHost = a.gossip.String()
	}
	if a.memberPort == 0 {
		a.memberPort = cfg.WGPort
	}
	return a, nil
}

// desired computes the network state the reconciler applies for the view v,
// and how long until it changes with time alone. It changes nothing: the
// reconciler moves the members to a new site before (moveMembers). While a
// new peer is watched for a lost initiation (mesh.NeedsHeard), it reads the
// interface's counters.
func (d *Daemon) desired(v mesh.View) (netcfg.Config, time.Duration, error) {
	now := time.Now()
	members, reachEnds := d.memberPeers(now)
	in := mesh.PlanInput{
		View:                v,
		Members:             members,
		PrivateKey:          d.priv,
		Interface:           d.cfg.Interface,
		ListenPort:          d.cfg.WGPort,
		MTU:                 d.cfg.MTU,
		AllowMemberToMember: d.cfg.AllowMemberToMember,
		Uplink:              d.cfg.Uplink,
		TCPPorts:            meshPorts(d.cfg.MeshTCPPorts, d.cfg.HTTPPort, d.cfg.DNSPort),
		UDPPorts:            meshPorts(d.cfg.MeshUDPPorts, d.cfg.DNSPort),
		Now:                 now,
		Resets:              d.resets.snapshot(),
	}
	if mesh.NeedsHeard(in) {
		in.Heard = heard(d.applier, v)
	}
	recheck := mesh.PlanRecheck(in)
	if reachEnds > 0 && (recheck == 0 || reachEnds < recheck) {
		recheck = reachEnds
	}
	return mesh.Plan(in), recheck, nil
}

// noteSkipped logs, once each, the bootures the plan for v leaves out
// because their key is a member's or ours (the reconciler plans at every
// change). Only the reconciler's goroutine calls it.
func (d *Daemon) noteSkipped(v mesh.View) {
	members, _ := d.memberPeers(time.Now())
	skips := mesh.PlanSkips(mesh.PlanInput{View: v, Members: members})
	now := make(map[key.PublicKey]bool, len(skips))
	for _, s := range skips {
		now[s.Key] = true
		if d.skipped[s.Key] {
			continue
		}
		why := "its public key is this booture's own"
		if s.Member {
			why = "its public key is a VPN member's"
		}
		d.log.Error("booture left out of the network: "+why+" (one WireGuard peer per key; the member was there first)",
			"peer", s.Name, "public_key", s.Key.String())
	}
	d.skipped = now
}

// meshPorts lists the ports members and other bootures may reach on the
// mesh addresses: the gateway's (given) and the admin's extra ones (valid
// port numbers: Config.Validate checked them).
func meshPorts(extra []int, ports ...int) []uint16 {
	out := make([]uint16, 0, len(ports)+len(extra))
	for _, p := range append(ports, extra...) {
		out = append(out, uint16(p))
	}
	return out
}

// Node returns the mesh node (tests).
func (d *Daemon) Node() *mesh.Node { return d.node }

// Applier returns the network applier (tests).
func (d *Daemon) Applier() netcfg.Applier { return d.applier }
