package daemon

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/key"
	"github.com/booture/booture/mesh"
	"github.com/booture/booture/netcfg"
)

var _ api.Backend = (*Daemon)(nil)

// Status implements api.Backend.
func (d *Daemon) Status(ctx context.Context) (api.Status, error) {
	v := d.node.View()
	wg, werr := d.applier.State(ctx)
	live := make(map[key.PublicKey]netcfg.PeerState)
	if werr == nil {
		for _, p := range wg.Peers {
			live[p.PublicKey] = p
		}
	}
	v4, v6 := v.Site.Booture()
	st := api.Status{
		Name:      v.Self.Name,
		Version:   Version,
		PublicKey: d.priv.Public().String(),
		MeshID:    v.MeshID.String(),
		MeshIPv4:  v4.String(),
		MeshIPv6:  v6.String(),
		Site:      v.Site.Number,
		SiteIPv4:  v.Site.IPv4.String(),
		SiteIPv6:  v.Site.IPv6.String(),
		MeshPool4: mesh.PoolIPv4.String(),
		MeshPool6: v.ULA.String(),
		Endpoint:  v.Self.Endpoint.String(),
		Gossip:    v.Self.Gossip.String(),
		Epoch:     v.Epoch,
		WireGuard: api.WireGuard{
			Interface: d.cfg.Interface, Mode: string(wg.Mode), ListenPort: wg.ListenPort, MTU: wg.MTU,
		},
		Peers:         []api.Peer{},
		Conflicts:     []api.Conflict{},
		Expelled:      v.Expelled,
		GossipTraffic: api.Traffic{In: v.GossipBytesIn, Out: v.GossipBytesOut},
	}
	if werr != nil {
		st.WireGuard.ListenPort = d.cfg.WGPort
	}
	for _, p := range v.Peers {
		s := mesh.SiteOf(v.ULA, p.Site)
		p4, p6 := s.Booture()
		ap := api.Peer{
			Name: p.Name, PublicKey: p.PublicKey.String(), MeshIPv4: p4.String(), MeshIPv6: p6.String(),
			Site: p.Site, SiteIPv4: s.IPv4.String(), State: string(p.State), Version: p.Version,
			Endpoint: p.Endpoint.String(), SiteConflict: p.SiteLost,
		}
		if w, ok := live[p.PublicKey]; ok {
			if w.Endpoint.IsValid() {
				ap.Endpoint = w.Endpoint.String()
			}
			if !w.LastHandshake.IsZero() {
				t := w.LastHandshake.UTC()
				ap.LastHandshake = &t
			}
			ap.RxBytes, ap.TxBytes = w.RxBytes, w.TxBytes
		}
		st.Peers = append(st.Peers, ap)
	}
	for _, c := range v.Conflicts {
		st.Conflicts = append(st.Conflicts, api.Conflict{
			Site: c.Site, Winner: c.Winner, Loser: c.Loser, NewSite: c.NewSite, At: time.UnixMilli(c.At).UTC(),
		})
	}
	runs, errs, last, lastErr := d.rec.stats()
	st.Reconcile = api.Reconcile{Runs: runs, Errors: errs, LastError: lastErr}
	if !last.IsZero() {
		t := last.UTC()
		st.Reconcile.LastRun = &t
	}
	st.Members = d.memberCount()
	st.MemberEndpoint, st.MembersOutdated = d.outdatedMembers()
	return st, nil
}

// Invite implements api.Backend.
func (d *Daemon) Invite(ctx context.Context, ttl time.Duration) (api.Invitation, error) {
	inv, err := d.node.Invite(ttl)
	if err != nil {
		return api.Invitation{}, api.BadRequest(err)
	}
	return api.Invitation{Token: inv.Token, Expires: inv.Expires.UTC(), ID: inv.ID}, nil
}

// Invitations implements api.Backend.
func (d *Daemon) Invitations(ctx context.Context) ([]api.PendingInvitation, error) {
	out := []api.PendingInvitation{}
	for _, inv := range d.node.Invitations() {
		out = append(out, pendingInvitation(inv))
	}
	return out, nil
}

// RevokeInvitation implements api.Backend.
func (d *Daemon) RevokeInvitation(ctx context.Context, tokenOrID string) (api.PendingInvitation, error) {
	inv, err := d.node.RevokeInvitation(tokenOrID)
	switch {
	case errors.Is(err, mesh.ErrInvitationNotFound):
		return api.PendingInvitation{}, api.NotFound(err)
	case err != nil:
		return api.PendingInvitation{}, api.BadRequest(err)
	}
	return pendingInvitation(inv), nil
}

func pendingInvitation(inv mesh.InvitationInfo) api.PendingInvitation {
	return api.PendingInvitation{ID: inv.ID, Created: inv.Created.UTC(), Expires: inv.Expires.UTC()}
}

// Join implements api.Backend.
func (d *Daemon) Join(ctx context.Context, token string) (api.JoinResult, error) {
	res, err := d.node.Join(ctx, strings.TrimSpace(token))
	if err != nil {
		return api.JoinResult{}, api.BadRequest(err)
	}
	// A join usually moves this booture to another site: answer once the
	// members moved with it and the network follows, so that what the admin
	// does next (member add, member show --config) sees the new site.
	if err := d.reconcileNow(ctx); err != nil {
		d.log.Warn("joined, but applying the network failed (it will be retried)", "err", err)
	}
	return api.JoinResult{MeshID: res.MeshID.String(), Site: res.Site, Inviter: res.Inviter, Merged: res.Merged}, nil
}

// Expel implements api.Backend.
func (d *Daemon) Expel(ctx context.Context, name string) (api.ExpelResult, error) {
	res, err := d.node.Expel(ctx, name)
	switch {
	case errors.Is(err, mesh.ErrNotFound):
		return api.ExpelResult{}, api.NotFound(err)
	case err != nil:
		return api.ExpelResult{}, api.BadRequest(err)
	}
	return api.ExpelResult{Name: res.Name, Notified: nonNil(res.Notified), Unreached: nonNil(res.Unreached)}, nil
}

// Leave implements api.Backend.
func (d *Daemon) Leave(ctx context.Context) error {
	if err := d.node.Leave(ctx); err != nil {
		return api.Errorf(http.StatusInternalServerError, "leaving the mesh: %v", err)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
