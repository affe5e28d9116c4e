package gateway

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/booture/booture/catalog"
	"github.com/booture/booture/internal/names"
)

// State is everything the gateway serves, as the daemon knows it now. The
// gateway copies what it keeps: the caller may reuse the slices.
type State struct {
	// Self is this booture: its name and mesh addresses.
	Self catalog.Booture
	// Network classifies source addresses (who may use what).
	Network Network
	// Routes are the local routes of the plugin host.
	Routes []catalog.Route
	// Services is the mesh-wide catalog, this booture's services included.
	Services []catalog.Service
	// Bootures are the bootures of the mesh; Self may be listed or not.
	Bootures []catalog.Booture
}

// ErrInvalidState is wrapped by Update's errors for a State it refused.
var ErrInvalidState = errors.New("invalid gateway state")

// svcKey names a service of the mesh.
type svcKey struct{ booture, name string }

// dnsName is what a mesh name resolves to.
type dnsName struct{ v4, v6 netip.Addr }

// snapshot is an immutable view of a State with the indexes requests and
// queries need. It is never modified after Update publishes it.
type snapshot struct {
	ready     bool
	domain    string // "booture.internal"
	dotDomain string // ".booture.internal"
	zone      string // "booture.internal."
	serial    uint32

	self      catalog.Booture
	selfHost  string // "diois.booture.internal"
	portalURL string
	selfIPs   [2]string // textual mesh addresses, Host headers by address
	net       Network

	hosts    map[string]*hostRoutes
	services map[svcKey]*catalog.Service
	bootures map[string]catalog.Booture
	names    map[string]dnsName // relative to the zone: "diois", "cloud.diois"

	// catalog is sorted: this booture first, then by booture and name.
	catalog []catalog.Service

	portal [2]portalCache // [0] everything, [1] public services only
}

// hostRoutes are the local routes of one host name, longest prefix first.
type hostRoutes struct {
	service string
	access  catalog.Access // the service's, for requests no route matches
	svc     *catalog.Service
	routes  []*route
}

// match returns the route with the longest prefix matching path, or nil.
// A prefix matches whole path segments: "/api" matches "/api" and
// "/api/x" but not "/apix"; a prefix ending in "/" matches what it starts.
func (h *hostRoutes) match(path string) *route {
	for _, rt := range h.routes {
		if prefixMatch(rt.PathPrefix, path) {
			return rt
		}
	}
	return nil
}

func prefixMatch(prefix, path string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || prefix[len(prefix)-1] == '/' || path[len(prefix)] == '/'
}

// hostKind is what a Host header designates.
type hostKind uint8

const (
	hostUnknown   hostKind = iota
	hostPortal             // this booture's portal
	hostLocal              // a local service with routes
	hostLocalDown          // a local service known to the catalog, without routes
	hostElsewhere          // a service or portal of another booture
)

type hostMatch struct {
	kind    hostKind
	routes  *hostRoutes
	svc     *catalog.Service // catalog entry, when known
	service string
	booture string
}

// lookupHost resolves a normalized host name (see hostName). It does not
// allocate.
func (s *snapshot) lookupHost(host string) hostMatch {
	if host == "" || host == s.selfHost || host == s.selfIPs[0] || host == s.selfIPs[1] {
		return hostMatch{kind: hostPortal}
	}
	if hr := s.hosts[host]; hr != nil {
		return hostMatch{kind: hostLocal, routes: hr, svc: hr.svc, service: hr.service, booture: s.self.Name}
	}
	if isIPLiteral(host) {
		// The LAN address, or the booture's address typed by hand.
		return hostMatch{kind: hostPortal}
	}
	rest, ok := strings.CutSuffix(host, s.dotDomain)
	if !ok || rest == "" {
		return hostMatch{}
	}
	svcName, b, two := strings.Cut(rest, ".")
	if !two {
		// BOOTURE.DOMAIN: a portal.
		if _, known := s.bootures[svcName]; known && svcName != s.self.Name {
			return hostMatch{kind: hostElsewhere, booture: svcName}
		}
		return hostMatch{}
	}
	if strings.IndexByte(b, '.') >= 0 {
		return hostMatch{}
	}
	svc := s.services[svcKey{b, svcName}]
	if b == s.self.Name {
		if svc != nil {
			return hostMatch{kind: hostLocalDown, svc: svc, service: svcName, booture: b}
		}
		return hostMatch{}
	}
	if svc != nil {
		return hostMatch{kind: hostElsewhere, svc: svc, service: svcName, booture: b}
	}
	return hostMatch{}
}

// isIPLiteral reports whether a normalized host is an IP address.
func isIPLiteral(host string) bool {
	if host == "" {
		return false
	}
	if c := host[len(host)-1]; strings.IndexByte(host, ':') < 0 && (c < '0' || c > '9') {
		return false // fast path for names: no TLD ends with a digit
	}
	_, err := netip.ParseAddr(host)
	return err == nil
}

// hostName normalizes a Host header: port, brackets and a trailing dot
// removed, lower case. It allocates only when the header has upper case.
// ok is false for what cannot be a host name or an IP literal.
func hostName(h string) (host string, ok bool) {
	h0 := h
	if len(h) > 255 {
		return "", false
	}
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 || !validPort(h[end+1:], true) {
			return "", false
		}
		h = h[1:end]
		if a, err := netip.ParseAddr(h); err != nil || a.Zone() != "" {
			return "", false
		}
		return lower(h), true
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		if strings.IndexByte(h[:i], ':') >= 0 {
			// Bare IPv6 literal, not valid in a Host header but harmless.
			if a, err := netip.ParseAddr(h); err != nil || a.Zone() != "" {
				return "", false
			}
			return lower(h), true
		}
		if !validPort(h[i:], false) {
			return "", false
		}
		h = h[:i]
	}
	if h == "" {
		return "", len(h0) == 0 // no Host (HTTP/1.0): the portal
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return "", false
		}
	}
	if h == "" || h[0] == '.' || h[len(h)-1] == '.' || strings.Contains(h, "..") {
		return "", false
	}
	return lower(h), true
}

// validPort accepts "" (when empty is allowed), ":" and ":digits".
func validPort(p string, emptyOK bool) bool {
	if p == "" {
		return emptyOK
	}
	if p[0] != ':' || len(p) > 6 {
		return false
	}
	for i := 1; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

// lower is strings.ToLower for ASCII that does not allocate when s has no
// upper case (strings.ToLower already avoids it, but also handles Unicode
// we never accept).
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// portalCache holds a rendered portal and catalog, built on first use.
type portalCache struct {
	once sync.Once
	html []byte
	json []byte
	err  error
}

// buildSnapshot validates st and indexes it. Invalid routes, services and
// bootures are skipped and returned as warnings: one bad plugin must not
// take the others down. A State that cannot be served at all (bad Self or
// Network) is an error.
func (g *Gateway) buildSnapshot(st State) (*snapshot, []error, error) {
	if err := names.Check(st.Self.Name); err != nil {
		return nil, nil, fmt.Errorf("%w: self: %w", ErrInvalidState, err)
	}
	if err := st.Network.Validate(); err != nil {
		return nil, nil, fmt.Errorf("%w: network: %w", ErrInvalidState, err)
	}
	self := st.Self
	self.IPv4 = self.IPv4.Unmap()
	if self.IPv4.IsValid() && !self.IPv4.Is4() || self.IPv6.IsValid() && (self.IPv6.Is4() || self.IPv6.Is4In6()) {
		return nil, nil, fmt.Errorf("%w: self: addresses %s and %s of the wrong families", ErrInvalidState, self.IPv4, self.IPv6)
	}
	d := g.cfg.Domain
	s := &snapshot{
		ready:     true,
		domain:    d,
		dotDomain: "." + d,
		zone:      d + ".",
		serial:    g.serial.Add(1),
		self:      self,
		selfHost:  self.Name + "." + d,
		net:       st.Network,
		hosts:     make(map[string]*hostRoutes),
		services:  make(map[svcKey]*catalog.Service, len(st.Services)),
		bootures:  make(map[string]catalog.Booture, len(st.Bootures)+1),
		names:     make(map[string]dnsName),
	}
	s.portalURL = "http://" + s.selfHost + "/"
	if self.IPv4.IsValid() {
		s.selfIPs[0] = self.IPv4.String()
	}
	if self.IPv6.IsValid() {
		s.selfIPs[1] = self.IPv6.String()
	}
	var warns []error

	for _, b := range st.Bootures {
		if err := names.Check(b.Name); err != nil {
			warns = append(warns, fmt.Errorf("skipping booture: %w", err))
			continue
		}
		if b.Name == self.Name {
			continue // Self wins over a possibly stale gossip record.
		}
		b.IPv4 = b.IPv4.Unmap()
		if !b.IPv4.Is4() {
			b.IPv4 = netip.Addr{}
		}
		if !b.IPv6.Is6() || b.IPv6.Is4In6() {
			b.IPv6 = netip.Addr{}
		}
		s.bootures[b.Name] = b
	}
	s.bootures[self.Name] = self
	for name, b := range s.bootures {
		s.names[name] = dnsName{b.IPv4, b.IPv6}
	}

	s.catalog = make([]catalog.Service, 0, len(st.Services))
	for _, sv := range st.Services {
		sv.Name, sv.Booture = lower(sv.Name), lower(sv.Booture)
		if err := names.Check(sv.Name); err != nil {
			warns = append(warns, fmt.Errorf("skipping service of %q: %w", sv.Booture, err))
			continue
		}
		if err := names.Check(sv.Booture); err != nil {
			warns = append(warns, fmt.Errorf("skipping service %q: booture: %w", sv.Name, err))
			continue
		}
		if _, dup := s.services[svcKey{sv.Booture, sv.Name}]; dup {
			warns = append(warns, fmt.Errorf("skipping duplicate service %s.%s", sv.Name, sv.Booture))
			continue
		}
		if sv.URL == "" {
			sv.URL = "http://" + sv.Name + "." + sv.Booture + "." + d + "/"
		}
		switch sv.Health {
		case catalog.HealthHealthy, catalog.HealthDegraded, catalog.HealthUnhealthy:
		default:
			sv.Health = catalog.HealthUnknown
		}
		if sv.Access == "" {
			sv.Access = catalog.AccessMembers
		}
		s.catalog = append(s.catalog, sv)
		s.services[svcKey{sv.Booture, sv.Name}] = nil // reserve; pointers set below
	}
	slices.SortFunc(s.catalog, func(a, b catalog.Service) int {
		if (a.Booture == self.Name) != (b.Booture == self.Name) {
			if a.Booture == self.Name {
				return -1
			}
			return 1
		}
		return cmp.Or(strings.Compare(a.Booture, b.Booture), strings.Compare(a.Name, b.Name))
	})
	for i := range s.catalog {
		sv := &s.catalog[i]
		s.services[svcKey{sv.Booture, sv.Name}] = sv
		if b, ok := s.bootures[sv.Booture]; ok {
			s.names[sv.Name+"."+sv.Booture] = dnsName{b.IPv4, b.IPv6}
		}
	}

	for _, r := range st.Routes {
		rt, err := g.newRoute(r, self.Name)
		if err != nil {
			warns = append(warns, fmt.Errorf("skipping route %s%s of %q: %w", r.Host, r.PathPrefix, r.Service, err))
			continue
		}
		hr := s.hosts[rt.Host]
		if hr == nil {
			hr = &hostRoutes{service: rt.Service, access: rt.Access}
			hr.svc = s.services[svcKey{self.Name, rt.Service}]
			if hr.svc != nil {
				hr.access = hr.svc.Access
			}
			s.hosts[rt.Host] = hr
		} else if hr.service != rt.Service {
			warns = append(warns, fmt.Errorf("skipping route %s%s of %q: host belongs to %q", rt.Host, rt.PathPrefix, rt.Service, hr.service))
			continue
		}
		if slices.ContainsFunc(hr.routes, func(o *route) bool { return o.PathPrefix == rt.PathPrefix }) {
			warns = append(warns, fmt.Errorf("skipping duplicate route %s%s of %q", rt.Host, rt.PathPrefix, rt.Service))
			continue
		}
		hr.routes = append(hr.routes, rt)
		if rest, ok := strings.CutSuffix(rt.Host, s.dotDomain); ok {
			s.names[rest] = dnsName{self.IPv4, self.IPv6}
		}
	}
	for _, hr := range s.hosts {
		slices.SortStableFunc(hr.routes, func(a, b *route) int { return len(b.PathPrefix) - len(a.PathPrefix) })
	}
	return s, warns, nil
}

// emptySnapshot is served before the first Update: nothing is known, DNS
// answers SERVFAIL for mesh names rather than a cached NXDOMAIN.
func (g *Gateway) emptySnapshot() *snapshot {
	d := g.cfg.Domain
	return &snapshot{
		domain:    d,
		dotDomain: "." + d,
		zone:      d + ".",
		hosts:     map[string]*hostRoutes{},
		services:  map[svcKey]*catalog.Service{},
		bootures:  map[string]catalog.Booture{},
		names:     map[string]dnsName{},
	}
}
