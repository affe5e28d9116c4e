package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/booture/booture/catalog"
	"github.com/booture/booture/gateway"
	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/mesh"
	"github.com/booture/booture/plugins/host"
)

// SystemPluginDir is searched for booture-plugin-* binaries installed by a
// package.
const SystemPluginDir = "/usr/lib/booture/plugins"

// pluginDirs lists where plugins are looked for: the configured
// directories, the system one, and the directory of the daemon's own binary
// (so that plugins built next to bootured are found).
func pluginDirs(cfg []string) []string {
	dirs := append(slices.Clone(cfg), SystemPluginDir)
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Dir(exe))
	}
	return dirs
}

// pluginSocketDir is where plugins make their sockets. Plugins that run
// as root get a directory next to the admin socket (one only root can
// enter); plugins that run as another user must pass through every
// directory above theirs, so they get one beside the admin socket's
// directory (/run/booture-plugins). Too long a path for unix sockets gives
// the host's default.
func pluginSocketDir(adminSocket string, user *host.User) string {
	dir := filepath.Join(filepath.Dir(adminSocket), "plugins")
	if user != nil {
		dir = filepath.Join(filepath.Dir(filepath.Dir(adminSocket)), "booture-plugins")
	}
	if len(dir) > 60 {
		return ""
	}
	return dir
}

// pluginUser resolves the configured plugin user. A daemon that is not
// root cannot switch: its plugins run as itself.
func (d *Daemon) pluginUser() (*host.User, error) {
	u, err := host.LookupUser(d.cfg.PluginUser)
	if err != nil {
		return nil, err
	}
	switch {
	case u == nil:
		d.log.Warn("plugins run as root (plugin_user)")
	case os.Geteuid() != 0:
		d.log.Info("plugins run as the daemon's user: the daemon is not root", "plugin_user", u.Name)
		return nil, nil
	default:
		d.log.Info("plugins run as an unprivileged user", "plugin_user", u.Name, "uid", u.UID)
	}
	return u, nil
}

// startPlugins creates the plugin host for the declared services.
func (d *Daemon) startPlugins() error {
	v := d.node.View()
	v4, v6 := v.Site.Booture()
	user, err := d.pluginUser()
	if err != nil {
		return fmt.Errorf("plugin host: %w", err)
	}
	m, err := host.New(host.Options{
		StateDir:   d.cfg.StateDir,
		PluginDirs: pluginDirs(d.cfg.PluginDirs),
		Specs:      d.cfg.Services,
		Mesh:       host.Mesh{Booture: d.cfg.Name, Domain: d.cfg.Domain, IPv4: v4, IPv6: v6},
		MeshInfo:   meshInfo{d},
		Logger:     d.log.With("subsystem", "plugins"),
		SocketDir:  pluginSocketDir(d.cfg.Socket, user),
		User:       user,
	})
	if err != nil {
		return fmt.Errorf("plugin host: %w", err)
	}
	d.plugins = m
	return nil
}

// meshInfo answers plugins' questions about the mesh.
type meshInfo struct{ d *Daemon }

func (mi meshInfo) Bootures(ctx context.Context) ([]catalog.Booture, error) {
	return mi.d.bootures(mi.d.node.View()), nil
}

func (mi meshInfo) Services(ctx context.Context) ([]catalog.Service, error) {
	return mi.d.node.Services(), nil
}

// bootures lists this booture and the others that are up, with their mesh
// addresses (for DNS and plugins).
func (d *Daemon) bootures(v mesh.View) []catalog.Booture {
	v4, v6 := v.Site.Booture()
	out := []catalog.Booture{{Name: v.Self.Name, IPv4: v4, IPv6: v6}}
	for _, p := range v.Peers {
		if !p.State.Up() || p.SiteLost {
			continue
		}
		p4, p6 := mesh.SiteOf(v.ULA, p.Site).Booture()
		out = append(out, catalog.Booture{Name: p.Name, IPv4: p4, IPv6: p6})
	}
	return out
}

// newGateway creates the HTTP proxy and DNS server.
func (d *Daemon) newGateway() error {
	gc := gateway.DefaultConfig()
	gc.Domain = d.cfg.Domain
	gc.Upstreams = d.cfg.DNSUpstreams
	gc.MeshInterface = d.cfg.Interface
	gw, err := gateway.New(gc, d.log.With("subsystem", "gateway"), d.registry)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	d.gw = gw
	return nil
}

// publish pushes the current state to the mesh (our catalog) and to the
// gateway (routes, catalog, bootures). It runs in the publisher goroutine.
func (d *Daemon) publish() {
	local := d.plugins.Services()
	d.node.SetServices(local)
	if d.gw == nil {
		return
	}
	v := d.node.View()
	v4, v6 := v.Site.Booture()
	st := gateway.State{
		Self: catalog.Booture{Name: v.Self.Name, IPv4: v4, IPv6: v6},
		Network: gateway.Network{
			Site4: v.Site.IPv4, Site6: v.Site.IPv6, Pool4: mesh.PoolIPv4, Pool6: v.ULA,
		},
		Routes:   d.plugins.Routes(),
		Services: d.node.Services(),
		Bootures: d.bootures(v),
	}
	if err := d.gw.Update(st); err != nil {
		d.log.Error("updating the gateway", "err", err)
		return
	}
	public := false
	for _, s := range local {
		public = public || s.Access == catalog.AccessPublic
	}
	d.listenGateway(st.Self, public)
}

// gatewayListen is what the gateway currently listens on.
type gatewayListen struct {
	mesh, lan gateway.Listen
	cancel    context.CancelFunc
}

// listenGateway (re)starts the gateway's listeners when the addresses they
// need change: the mesh addresses (site renumbered), and the LAN address,
// used only while a service is public.
func (d *Daemon) listenGateway(self catalog.Booture, public bool) {
	var want gatewayListen
	for _, a := range []netip.Addr{self.IPv4, self.IPv6} {
		want.mesh.HTTP = append(want.mesh.HTTP, netip.AddrPortFrom(a, uint16(d.cfg.HTTPPort)))
		want.mesh.DNS = append(want.mesh.DNS, netip.AddrPortFrom(a, uint16(d.cfg.DNSPort)))
	}
	if public && d.cfg.LANHTTP {
		want.lan.HTTP = []netip.AddrPort{netip.AddrPortFrom(d.adv.gossip, uint16(d.cfg.HTTPPort))}
	}
	cur := d.gwListen
	if cur != nil && slices.Equal(cur.mesh.HTTP, want.mesh.HTTP) && slices.Equal(cur.lan.HTTP, want.lan.HTTP) {
		return
	}
	if cur != nil {
		cur.cancel()
	}
	ctx, cancel := context.WithCancel(d.ctx)
	want.cancel = cancel
	d.gwListen = &want
	// Counted before they start: the daemon's Wait at shutdown must see
	// them even if they have not run yet.
	d.wg.Go(func() { d.serveGateway(ctx, want.mesh, "mesh") })
	if len(want.lan.HTTP) > 0 {
		d.wg.Go(func() { d.serveGateway(ctx, want.lan, "LAN") })
	}
}

// serveGateway serves on l until ctx ends, retrying after a failure (an
// address or port taken): the rest of the daemon keeps working meanwhile.
func (d *Daemon) serveGateway(ctx context.Context, l gateway.Listen, what string) {
	delay := time.Second
	for {
		err := d.gw.Serve(ctx, l)
		if ctx.Err() != nil {
			return
		}
		d.log.Error("gateway cannot listen on the "+what+" addresses; retrying", "http", l.HTTP, "dns", l.DNS, "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Minute)
	}
}

// publishLoop publishes whenever the mesh or the plugins change.
func (d *Daemon) publishLoop(ctx context.Context) {
	tick := time.NewTicker(d.cfg.Resync)
	defer tick.Stop()
	for {
		d.publish()
		select {
		case <-ctx.Done():
			return
		case <-d.pubTrigger:
		case <-d.plugins.Changes():
		case <-tick.C:
		}
	}
}

func (d *Daemon) triggerPublish() {
	select {
	case d.pubTrigger <- struct{}{}:
	default:
	}
}

// Services implements api.Backend: the catalog of the whole mesh.
func (d *Daemon) Services(ctx context.Context) ([]api.Service, error) {
	s := d.node.Services()
	if s == nil {
		s = []catalog.Service{}
	}
	return s, nil
}

func apiPlugin(p host.PluginInfo) api.Plugin {
	svcs := p.Services
	if svcs == nil {
		svcs = []string{}
	}
	return api.Plugin{
		Name: p.Name, Version: p.Version, Path: p.Path, SHA256: p.SHA256, State: string(p.State),
		Restarts: p.Restarts, LastError: p.LastError, Services: svcs,
	}
}

// Plugins implements api.Backend.
func (d *Daemon) Plugins(ctx context.Context) ([]api.Plugin, error) {
	out := []api.Plugin{}
	for _, p := range d.plugins.List() {
		out = append(out, apiPlugin(p))
	}
	return out, nil
}

// InstallPlugin implements api.Backend.
func (d *Daemon) InstallPlugin(ctx context.Context, path string) (api.Plugin, error) {
	p, err := d.plugins.Install(ctx, path)
	if err != nil {
		return api.Plugin{}, api.BadRequest(err)
	}
	d.log.Info("plugin installed", "plugin", p.Name, "sha256", p.SHA256)
	return apiPlugin(p), nil
}

// ReloadPlugin implements api.Backend.
func (d *Daemon) ReloadPlugin(ctx context.Context, name string) (api.Plugin, error) {
	if err := d.plugins.Reload(ctx, name); err != nil {
		return api.Plugin{}, api.BadRequest(err)
	}
	for _, p := range d.plugins.List() {
		if p.Name == name {
			return apiPlugin(p), nil
		}
	}
	return api.Plugin{}, api.NotFound(errors.New("plugin " + name + " not found after reload"))
}
