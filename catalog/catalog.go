// Package catalog is the vocabulary of services shared by the plugin host,
// the gateway (HTTP proxy and DNS) and the mesh: what a booture declares in
// its config (Spec), how the daemon's proxy routes a request to a local
// upstream (Route), and what every booture of the mesh learns about the
// others' services through gossip (Service, Booture).
package catalog

import (
	"fmt"
	"net/netip"
	"time"
)

// DefaultDomain is the DNS domain under which services and bootures are
// named: SERVICE.BOOTURE.DefaultDomain.
const DefaultDomain = "booture.internal"

// Access says who may reach a service, decided by the source address of the
// request.
type Access string

const (
	// AccessMembers: this booture's members only (and the booture itself).
	AccessMembers Access = "members"
	// AccessMesh: members of any booture of the mesh, and the bootures.
	AccessMesh Access = "mesh"
	// AccessPublic: also anyone on the booture's LAN.
	AccessPublic Access = "public"
)

// ParseAccess returns the Access named s, or an error listing the valid ones.
func ParseAccess(s string) (Access, error) {
	switch a := Access(s); a {
	case AccessMembers, AccessMesh, AccessPublic:
		return a, nil
	}
	return "", fmt.Errorf("invalid access %q: want members, mesh or public", s)
}

// Health is a service's health as last probed by its plugin.
type Health string

const (
	HealthUnknown   Health = "unknown"   // not probed yet, or plugin not running
	HealthHealthy   Health = "healthy"   // serving
	HealthDegraded  Health = "degraded"  // serving, with a problem worth showing
	HealthUnhealthy Health = "unhealthy" // not serving (maintenance, upstream down)
)

// Rank orders health from best to worst: healthy, degraded, unknown,
// unhealthy.
func (h Health) Rank() int {
	switch h {
	case HealthHealthy:
		return 0
	case HealthDegraded:
		return 1
	case HealthUnhealthy:
		return 3
	}
	return 2
}

// Spec is one service declared in a booture's config file:
//
//	[[service]]
//	plugin   = "nextcloud"
//	upstream = "http://127.0.0.1:8080"
//	access   = "members"
type Spec struct {
	// Plugin is the plugin's name (booture-plugin-NAME is its binary).
	Plugin string `toml:"plugin" json:"plugin"`
	// Name is the service's DNS label; empty means the plugin's default
	// (usually the plugin name).
	Name string `toml:"name" json:"name,omitempty"`
	// Upstream is the base URL of the local service the proxy forwards to.
	Upstream string `toml:"upstream" json:"upstream"`
	// Access is who may reach it; empty means AccessMembers.
	Access Access `toml:"access" json:"access"`
	// Settings are passed to the plugin unchanged (plugin-specific keys).
	Settings map[string]string `toml:"settings" json:"settings,omitempty"`
}

// Route tells the gateway's reverse proxy how to carry requests for one
// host name and path prefix to a local upstream.
type Route struct {
	// Service is the name of the service this route belongs to.
	Service string
	// Host is the full host name matched (SERVICE.BOOTURE.DOMAIN), lower
	// case, without port.
	Host string
	// PathPrefix is matched against the request path; "/" matches all.
	// The longest matching prefix wins.
	PathPrefix string
	// Upstream is the base URL requests are forwarded to (http or https,
	// normally on loopback). Empty when Redirect is set.
	Upstream string
	// Redirect, when set, answers with this location (absolute URL or path)
	// and RedirectCode instead of proxying (e.g. CalDAV's well-known).
	Redirect     string
	RedirectCode int
	// Websocket allows connection upgrades on this route.
	Websocket bool
	// MaxBodyBytes limits request bodies: 0 means the gateway's default,
	// a negative value means no limit.
	MaxBodyBytes int64
	// DialTimeout and ResponseTimeout bound the upstream connection and the
	// wait for response headers; 0 means the gateway's default.
	DialTimeout     time.Duration
	ResponseTimeout time.Duration
	// Access decides who may use the route.
	Access Access
}

// Service is one entry of the mesh-wide catalog, as `booture services
// --json` prints it.
type Service struct {
	Name    string `json:"name"`
	Booture string `json:"booture"`
	URL     string `json:"url"`
	Access  Access `json:"access"`
	Health  Health `json:"health"`
	// Message explains a health other than healthy, for the portal.
	Message string `json:"message,omitempty"`
}

// Booture is a booture of the mesh as the gateway needs it: its name and
// mesh addresses.
type Booture struct {
	Name string     `json:"name"`
	IPv4 netip.Addr `json:"mesh_ipv4"`
	IPv6 netip.Addr `json:"mesh_ipv6"`
}
