package daemon

import (
	"context"

	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/members"
)

var _ api.ReissueBackend = (*Daemon)(nil)

// ReissueMember implements api.ReissueBackend: a new key pair for the
// member and its complete configuration for the booture's current endpoint
// and site. The reconcile runs before the answer: the WireGuard peer of
// the old key is gone (a device still using it is cut) and the new one is
// there.
func (d *Daemon) ReissueMember(ctx context.Context, name string, qr bool) (api.MemberAdded, error) {
	srv, err := d.server()
	if err != nil {
		return api.MemberAdded{}, api.BadRequest(err)
	}
	// As in AddMember: the members follow a site that changed an instant
	// ago before the configuration names it.
	if d.members.Site() != srv.Site {
		if err := d.reconcileNow(ctx); err != nil {
			return api.MemberAdded{}, err
		}
	}
	old, err := d.members.Get(name)
	if err != nil {
		return api.MemberAdded{}, memberError(err)
	}
	m, priv, err := d.members.Reissue(name, srv.Endpoint)
	if err != nil {
		return api.MemberAdded{}, memberError(err)
	}
	d.reach.forget(old.PublicKey)
	if err := d.reconcileNow(ctx); err != nil {
		d.log.Warn("member reissued but not applied yet", "member", m.Name, "err", err)
	}
	text, err := members.Render(members.ConfigFor(m, priv, srv))
	if err != nil {
		return api.MemberAdded{}, err
	}
	out := api.MemberAdded{Member: d.apiMember(ctx, m, nil), Config: text}
	if qr {
		if out.QR, err = members.QR(text, members.QRColor); err != nil {
			return api.MemberAdded{}, err
		}
	}
	d.log.Info("member reissued: new key pair, the old one no longer connects", "member", m.Name, "endpoint", srv.Endpoint)
	return out, nil
}

// outdatedMembers returns the endpoint members' configurations name now,
// and the members whose configuration was issued for another endpoint or
// site.
func (d *Daemon) outdatedMembers() (string, []api.OutdatedMember) {
	out := []api.OutdatedMember{}
	srv, err := d.server()
	if err != nil {
		return "", out
	}
	for _, m := range d.members.List() {
		if !m.Issued.Outdated(srv.Endpoint, srv.Site.IPv4) {
			continue
		}
		om := api.OutdatedMember{Name: m.Name, IssuedEndpoint: m.Issued.Endpoint}
		if m.Issued.Site.IsValid() {
			om.IssuedSite = m.Issued.Site.String()
		}
		out = append(out, om)
	}
	return srv.Endpoint, out
}
