// Package sdk is what a booture plugin imports: the Plugin interface to
// implement, Serve to run it as a booture-plugin-NAME program, a logger that
// reaches the daemon's log, and ready-made HTTP health probes. Its sibling
// sdktest runs any implementation in-process and checks it against the
// protocol's rules (sdktest.Conformance).
//
// A plugin describes a service; it never carries its traffic: the daemon's
// reverse proxy forwards requests to the routes the plugin returns, so a
// plugin crash or upgrade drops no request.
package sdk

import (
	"context"
	"net/netip"
	"time"
)

// Plugin is implemented by a plugin. The host calls Describe, then
// Configure, then Health periodically, and Stop before ending the process.
// Calls may come concurrently; Health must answer within a few seconds
// (the host's deadline) or the plugin is considered hung and restarted.
type Plugin interface {
	// Describe returns the plugin's identity. It must not depend on
	// Configure having been called.
	Describe(ctx context.Context) (Info, error)
	// Configure receives the plugin's services and the mesh context and
	// returns the routes the daemon's proxy should carry. It may be called
	// again; the new configuration replaces the previous one. Slow work
	// (running a command, waiting for an upstream) belongs in the
	// background, reported through Health.
	Configure(ctx context.Context, req ConfigureRequest) (ConfigureResponse, error)
	// Health probes the services.
	Health(ctx context.Context) (Health, error)
	// Stop releases resources (listeners, goroutines). The process ends
	// soon after.
	Stop(ctx context.Context) error
}

// Info is what Describe returns.
type Info struct {
	// Name is the plugin's name, a DNS label (a-z, 0-9, '-'); the binary
	// is booture-plugin-NAME.
	Name string
	// Version is the plugin's own version, e.g. "1.2.0".
	Version string
	// Services are the kinds of service offered; the first one's name is
	// used in messages. At least one.
	Services []ServiceInfo
}

// ServiceInfo describes a kind of service a plugin offers.
type ServiceInfo struct {
	Name        string // DNS label
	Description string
}

// Mesh is the context of the booture the plugin runs on.
type Mesh struct {
	Booture string     // this booture's name
	Domain  string     // e.g. "booture.internal"
	IPv4    netip.Addr // this booture's mesh IPv4 (may be invalid when unknown)
	IPv6    netip.Addr // this booture's mesh IPv6 (may be invalid when unknown)
}

// ServiceSpec is one service of the daemon's config handled by the plugin.
type ServiceSpec struct {
	// Name is the service's name (DNS label).
	Name string
	// Host is the service's host name, SERVICE.BOOTURE.DOMAIN: the only
	// host its routes may use.
	Host string
	// Upstream is the base URL of the local service, as configured.
	Upstream string
	// Access is "members", "mesh" or "public". The daemon enforces it;
	// it is given for information.
	Access string
	// Settings are the plugin-specific settings of the config file.
	Settings map[string]string
}

// URL returns "http://HOST/", the address members use.
func (s ServiceSpec) URL() string { return "http://" + s.Host + "/" }

// ConfigureRequest is what Configure receives.
type ConfigureRequest struct {
	Mesh     Mesh
	Services []ServiceSpec
	// Host lets the plugin ask the daemon about the mesh. It is never nil.
	Host HostInfo
}

// HostInfo is the daemon's side, reachable from the plugin.
type HostInfo interface {
	// Bootures lists the bootures of the mesh, this one included.
	Bootures(ctx context.Context) ([]Booture, error)
	// Services lists the services of the whole mesh.
	Services(ctx context.Context) ([]Service, error)
}

// Booture is a booture of the mesh.
type Booture struct {
	Name string
	IPv4 netip.Addr
	IPv6 netip.Addr
}

// Service is an entry of the mesh's service catalog.
type Service struct {
	Name    string
	Booture string
	URL     string
	Access  string
	Health  State
	Message string
}

// ConfigureResponse is what Configure returns.
type ConfigureResponse struct {
	Routes []Route
	// Notes are things the admin should know or do (a setting to change
	// in the upstream's config, say); the daemon logs them.
	Notes []Note
}

// Note is a message for the admin about one service.
type Note struct {
	Service string
	Text    string
}

// Route tells the daemon's reverse proxy how to carry requests for one host
// and path prefix.
type Route struct {
	// Service is the ServiceSpec.Name this route belongs to.
	Service string
	// Host must be the service's ServiceSpec.Host.
	Host string
	// PathPrefix starts with '/'; "/" matches everything; the longest
	// matching prefix wins.
	PathPrefix string
	// Upstream is the http(s) base URL requests go to. Leave it empty when
	// Redirect is set.
	Upstream string
	// Redirect, when set, answers with this location (a path or an
	// absolute http(s) URL) and RedirectCode instead of proxying.
	Redirect string
	// RedirectCode is 301, 302, 303, 307 or 308; 0 means 301.
	RedirectCode int
	// Websocket allows connection upgrades.
	Websocket bool
	// MaxBodyBytes limits request bodies: 0 means the daemon's default, a
	// negative value means no limit.
	MaxBodyBytes int64
	// DialTimeout bounds connecting to the upstream, ResponseTimeout the
	// wait for response headers after the request was sent; 0 means the
	// daemon's default.
	DialTimeout     time.Duration
	ResponseTimeout time.Duration
}

// State is a health state.
type State string

// Health states, from best to worst.
const (
	StateUnknown   State = "unknown"
	StateHealthy   State = "healthy"
	StateDegraded  State = "degraded"
	StateUnhealthy State = "unhealthy"
)

// rank orders states from best to worst, unknown between degraded and
// unhealthy: not knowing is worse than a known problem that still serves.
func (s State) rank() int {
	switch s {
	case StateHealthy:
		return 0
	case StateDegraded:
		return 1
	case StateUnhealthy:
		return 3
	}
	return 2
}

// Worse returns the worse of s and o.
func (s State) Worse(o State) State {
	if o.rank() > s.rank() {
		return o
	}
	return s
}

// Health is what Health returns.
type Health struct {
	// State is the plugin's overall state; Message explains it.
	State   State
	Message string
	// Checks are the individual probes. A check with a Service applies to
	// that service only; the daemon shows each service the worst state of
	// its checks, or State when it has none.
	Checks []Check
}

// Check is the result of one probe.
type Check struct {
	Service  string
	Name     string
	State    State
	Message  string
	Duration time.Duration
}
