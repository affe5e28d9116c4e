package members

import (
	"fmt"
	"net/netip"

	"github.com/booture/booture/key"
)

// issue is the Issue of a configuration made now for endpoint in site.
func issue(endpoint string, site Site) Issue {
	if endpoint == "" {
		return Issue{}
	}
	return Issue{Endpoint: endpoint, Site: site.IPv4}
}

// Reissue gives the member a new key pair and records that its new
// configuration is made for endpoint and the current site. It returns the
// member once that is on disk, with the new private key: as with Add, the
// only copy, for the configuration to hand over now. The old key is no
// longer the member's: the daemon replaces its WireGuard peer, so a device
// with the old configuration is cut at once. Addresses, tunnel mode and
// state stay. Errors wrap ErrNotFound, ErrNotSaved or ErrClosed.
func (r *Registry) Reissue(name, endpoint string) (Member, *key.PrivateKey, error) {
	priv, err := key.NewPrivateKey()
	if err != nil {
		return Member{}, nil, fmt.Errorf("reissuing member %.70q: generating key pair: %w", name, err)
	}
	pub := priv.Public()
	var out Member
	err = r.do(func(s *state) (bool, error) {
		m, ok := s.byName[name]
		if !ok {
			return false, ErrNotFound
		}
		if other, ok := s.byKey[pub]; ok { // never, for a fresh key
			return false, fmt.Errorf("%w by member %q", ErrKeyInUse, other)
		}
		delete(s.byKey, m.PublicKey)
		m.PublicKey = pub
		m.Issued = issue(endpoint, s.site)
		s.put(m)
		out = m
		return true, nil
	})
	if err != nil {
		return Member{}, nil, fmt.Errorf("reissuing member %.70q: %w", name, err)
	}
	return out, &priv, nil
}

// SiteIPv4 is a helper for Issue.Outdated: the registry's current IPv4 site.
func (r *Registry) SiteIPv4() netip.Prefix { return r.Site().IPv4 }
