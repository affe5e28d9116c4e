package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"time"

	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/key"
	"github.com/booture/booture/members"
	"github.com/booture/booture/mesh"
	"github.com/booture/booture/netcfg"
)

// MembersFile is the name of the members registry in the state directory.
const MembersFile = "members.json"

// openMembers opens the member registry for the booture's current site.
func (d *Daemon) openMembers() error {
	site := d.memberSite(d.node.View())
	reg, err := members.Open(filepath.Join(d.cfg.StateDir, MembersFile), site,
		members.WithLogger(d.log.With("subsystem", "members")),
		members.WithBootureKeys(d.bootureByKey))
	if err != nil {
		return err
	}
	if old, moved := reg.PreviousSite(); moved {
		d.log.Warn("members moved to this booture's new site: they need their new configuration (booture member show)",
			"old_site", old.String(), "new_site", site.String())
	}
	d.members = reg
	return nil
}

func (d *Daemon) memberSite(v mesh.View) members.Site {
	return members.Site{IPv4: v.Site.IPv4, IPv6: v.Site.IPv6}
}

// bootureByKey says which booture of the mesh uses pub, if any.
func (d *Daemon) bootureByKey(pub key.PublicKey) (string, bool) {
	if pub == d.priv.Public() {
		return d.cfg.Name + " (this booture)", true
	}
	for _, p := range d.node.View().Peers {
		if p.PublicKey == pub {
			return p.Name, true
		}
	}
	return "", false
}

// moveMembers moves the members, and persists it, when the booture's site in
// v changed (a site conflict settled against it, or a merge); it does
// nothing when they are already there. It runs in the reconciler, before
// each plan.
func (d *Daemon) moveMembers(v mesh.View) error {
	site := d.memberSite(v)
	if d.members.Site() == site {
		return nil
	}
	if err := d.members.SetSite(site); err != nil {
		return err
	}
	d.log.Warn("this booture's site changed: members moved with it and need their new configuration (booture member show NAME --config)",
		"site", site.String())
	return nil
}

// memberPeers returns the enabled members for the plan, and how long until
// a member's reach window ends (0 if none is open).
func (d *Daemon) memberPeers(now time.Time) ([]mesh.MemberPeer, time.Duration) {
	var out []mesh.MemberPeer
	var next time.Duration
	for _, m := range d.members.List() {
		if !m.Enabled() {
			continue
		}
		reach, until := d.reach.endpoint(m.PublicKey, now)
		if left := until.Sub(now); reach.IsValid() && (next == 0 || left < next) {
			next = left
		}
		out = append(out, mesh.MemberPeer{PublicKey: m.PublicKey, IPv4: m.IPv4, IPv6: m.IPv6, FullTunnel: m.FullTunnel, Reach: reach})
	}
	return out, next
}

func (d *Daemon) memberCount() int { return d.members.Len() }

// server describes this booture to its members.
func (d *Daemon) server() (members.Server, error) {
	v := d.node.View()
	if a := d.adv.gossip; d.adv.memberHost == a.String() && (a.IsLoopback() || a.IsUnspecified()) {
		return members.Server{}, fmt.Errorf("no usable endpoint for members (%s): set --advertise to the address members reach this booture at", a)
	}
	return members.Server{
		Name:      d.cfg.Name,
		PublicKey: d.priv.Public(),
		Endpoint:  net.JoinHostPort(d.adv.memberHost, strconv.Itoa(d.adv.memberPort)),
		Site:      d.memberSite(v),
		MeshIPv4:  mesh.PoolIPv4,
		MeshIPv6:  v.ULA,
		Domain:    d.cfg.Domain,
	}, nil
}

// memberError maps the registry's errors to API errors.
func memberError(err error) error {
	switch {
	case errors.Is(err, members.ErrNotFound):
		return api.NotFound(err)
	case errors.Is(err, members.ErrExists), errors.Is(err, members.ErrKeyInUse), errors.Is(err, members.ErrSiteFull):
		return api.ConflictErr(err)
	case errors.Is(err, members.ErrInvalidName), errors.Is(err, members.ErrInvalidKey):
		return api.BadRequest(err)
	}
	return err
}

// AddMember implements api.Backend.
func (d *Daemon) AddMember(ctx context.Context, req api.MemberAddRequest) (api.MemberAdded, error) {
	srv, err := d.server()
	if err != nil {
		return api.MemberAdded{}, api.BadRequest(err)
	}
	// Members follow the booture's site, which a join or a settled site
	// conflict may have changed an instant ago, before the reconciler moved
	// them: have it move them first, so that the new member gets an address
	// in the site its configuration names.
	if d.members.Site() != srv.Site {
		if err := d.reconcileNow(ctx); err != nil {
			return api.MemberAdded{}, err
		}
	}
	m, priv, err := d.members.Add(members.AddRequest{Name: req.Name, PublicKey: req.PublicKey, FullTunnel: req.FullTunnel, Endpoint: srv.Endpoint})
	if err != nil {
		return api.MemberAdded{}, memberError(err)
	}
	// The member may connect as soon as it has its configuration. If
	// applying fails, the reconciler retries; the configuration (the only
	// copy of a generated private key) must reach the admin anyway.
	if err := d.reconcileNow(ctx); err != nil {
		d.log.Warn("member added but not applied yet", "member", m.Name, "err", err)
	}
	// The site may still have moved meanwhile: describe the member as it is
	// now, with the booture as it is now.
	if cur, err := d.members.Get(m.Name); err == nil {
		m = cur
	}
	if cur, err := d.server(); err == nil {
		srv = cur
	}
	text, err := members.Render(members.ConfigFor(m, priv, srv))
	if err != nil {
		return api.MemberAdded{}, err
	}
	out := api.MemberAdded{Member: d.apiMember(ctx, m, nil), Config: text}
	if req.QR {
		if out.QR, err = members.QR(text, members.QRColor); err != nil {
			return api.MemberAdded{}, err
		}
	}
	d.log.Info("member added", "member", m.Name, "ipv4", m.IPv4.String(), "full_tunnel", m.FullTunnel, "own_key", req.PublicKey != "")
	return out, nil
}

// Members implements api.Backend.
func (d *Daemon) Members(ctx context.Context) ([]api.Member, error) {
	live := d.livePeers(ctx)
	out := []api.Member{}
	for _, m := range d.members.List() {
		out = append(out, d.apiMember(ctx, m, live))
	}
	return out, nil
}

// Member implements api.Backend.
func (d *Daemon) Member(ctx context.Context, name string) (api.Member, error) {
	m, err := d.members.Get(name)
	if err != nil {
		return api.Member{}, memberError(err)
	}
	return d.apiMember(ctx, m, d.livePeers(ctx)), nil
}

// MemberConfig implements api.Backend: the member's configuration without
// its private key (which the booture never kept).
func (d *Daemon) MemberConfig(ctx context.Context, name string, qr bool) (api.MemberConfig, error) {
	m, err := d.members.Get(name)
	if err != nil {
		return api.MemberConfig{}, memberError(err)
	}
	srv, err := d.server()
	if err != nil {
		return api.MemberConfig{}, api.BadRequest(err)
	}
	text, err := members.Render(members.ConfigFor(m, nil, srv))
	if err != nil {
		return api.MemberConfig{}, err
	}
	out := api.MemberConfig{Config: text}
	if qr {
		if out.QR, err = members.QR(text, members.QRColor); err != nil {
			return api.MemberConfig{}, err
		}
	}
	return out, nil
}

// SetMemberEnabled implements api.Backend. The reconcile runs before the
// answer: when the CLI says "disabled", the member's packets are no longer
// accepted.
func (d *Daemon) SetMemberEnabled(ctx context.Context, name string, enabled bool) (api.Member, error) {
	var m members.Member
	var err error
	if enabled {
		m, err = d.members.Enable(name)
		if err == nil {
			d.reach.reach(m.PublicKey, time.Now())
		}
	} else {
		// Remember where it is, to reach it at once when enabled again.
		if cur, gerr := d.members.Get(name); gerr == nil {
			if p, ok := d.livePeers(ctx)[cur.PublicKey]; ok && p.Endpoint.IsValid() {
				d.reach.observe(map[key.PublicKey]netip.AddrPort{cur.PublicKey: p.Endpoint})
			}
		}
		m, err = d.members.Disable(name)
	}
	if err != nil {
		return api.Member{}, memberError(err)
	}
	if err := d.reconcileNow(ctx); err != nil {
		return api.Member{}, err
	}
	d.log.Info("member "+map[bool]string{true: "enabled", false: "disabled"}[enabled], "member", name)
	return d.apiMember(ctx, m, nil), nil
}

// RemoveMember implements api.Backend.
func (d *Daemon) RemoveMember(ctx context.Context, name string) error {
	m, err := d.members.Remove(name)
	if err != nil {
		return memberError(err)
	}
	d.reach.forget(m.PublicKey)
	d.log.Info("member removed", "member", name)
	return d.reconcileNow(ctx)
}

// reconcileNow has the reconciler apply the network state before it
// returns, so that a cut is effective when the CLI reports it. A failed
// apply is retried by the reconciler.
func (d *Daemon) reconcileNow(ctx context.Context) error {
	if err := d.rec.applyNow(ctx); err != nil {
		return fmt.Errorf("the change is saved but applying it failed (it will be retried): %w", err)
	}
	return nil
}

// livePeers returns WireGuard's live state by key.
func (d *Daemon) livePeers(ctx context.Context) map[key.PublicKey]netcfg.PeerState {
	out := make(map[key.PublicKey]netcfg.PeerState)
	st, err := d.applier.State(ctx)
	if err != nil {
		return out
	}
	for _, p := range st.Peers {
		out[p.PublicKey] = p
	}
	return out
}

func (d *Daemon) apiMember(ctx context.Context, m members.Member, live map[key.PublicKey]netcfg.PeerState) api.Member {
	if live == nil {
		live = d.livePeers(ctx)
	}
	state := "enabled"
	if !m.Enabled() {
		state = "disabled"
	}
	out := api.Member{
		Name: m.Name, PublicKey: m.PublicKey.String(), IPv4: m.IPv4.String(), IPv6: m.IPv6.String(),
		State: state, FullTunnel: m.FullTunnel, Created: m.Created.UTC(),
	}
	if p, ok := live[m.PublicKey]; ok {
		if p.Endpoint.IsValid() {
			out.Endpoint = p.Endpoint.String()
		}
		if !p.LastHandshake.IsZero() {
			t := p.LastHandshake.UTC()
			out.LastHandshake = &t
		}
		out.RxBytes, out.TxBytes = p.RxBytes, p.TxBytes
	}
	return out
}

// memberStats returns members with live counters (metrics).
func (d *Daemon) memberStats(ctx context.Context) []api.Member {
	ms, _ := d.Members(ctx)
	return ms
}
