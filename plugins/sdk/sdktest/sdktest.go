// Package sdktest runs a plugin implementation in-process, over the same
// gRPC protocol and go-plugin machinery the daemon uses
// (plugin.TestPluginGRPCConn), and checks it against the protocol's rules.
// Call Conformance from your plugin's own tests:
//
//	func TestConformance(t *testing.T) {
//		sdktest.Conformance(t, myplugin.New(), sdktest.WithServices(sdk.ServiceSpec{
//			Name: "wiki", Upstream: upstream.URL,
//		}))
//	}
package sdktest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/booture/booture/catalog"
	"github.com/booture/booture/plugins/internal/wire"
	pb "github.com/booture/booture/plugins/proto"
	"github.com/booture/booture/plugins/sdk"
)

// Conn is a plugin running in-process, seen from the daemon's side.
type Conn struct {
	c *wire.Client
}

// both serves the plugin and dispenses the daemon's client in one process.
type both struct {
	*sdk.GRPCPlugin
	client *wire.Plugin
}

func (b both) GRPCClient(ctx context.Context, broker *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return b.client.GRPCClient(ctx, broker, conn)
}

// Start runs impl in-process and connects to it. host answers the plugin's
// questions about the mesh; nil means a mesh of this booture alone. The
// connection is closed when the test ends.
func Start(t testing.TB, impl sdk.Plugin, host sdk.HostInfo) *Conn {
	t.Helper()
	var info wire.MeshInfo = emptyMesh{}
	if host != nil {
		info = hostAdapter{host}
	}
	ps := map[string]plugin.Plugin{pb.PluginKey: both{
		GRPCPlugin: &sdk.GRPCPlugin{Impl: impl},
		client:     &wire.Plugin{Host: info},
	}}
	client, server := plugin.TestPluginGRPCConn(t, false, ps)
	t.Cleanup(func() {
		// Server first: client.Close asks the server to stop too, and two
		// concurrent stops race inside go-plugin.
		server.Stop()
		client.Close()
	})
	raw, err := client.Dispense(pb.PluginKey)
	if err != nil {
		t.Fatalf("dispensing plugin: %v", err)
	}
	return &Conn{c: raw.(*wire.Client)}
}

// Describe calls the plugin's Describe over gRPC.
func (c *Conn) Describe(ctx context.Context) (sdk.Info, error) {
	d, err := c.c.Describe(ctx)
	if err != nil {
		return sdk.Info{}, err
	}
	info := sdk.Info{Name: d.Name, Version: d.Version}
	for _, s := range d.Services {
		info.Services = append(info.Services, sdk.ServiceInfo{Name: s.Name, Description: s.Description})
	}
	return info, nil
}

// Configure calls the plugin's Configure over gRPC. Services without a
// Host get SERVICE.BOOTURE.DOMAIN, as the daemon sends. The routes are
// checked as the daemon checks them; err reports a refused service.
func (c *Conn) Configure(ctx context.Context, mesh sdk.Mesh, services []sdk.ServiceSpec) (sdk.ConfigureResponse, error) {
	wm, specs := toWire(mesh, services)
	conf, err := c.c.Configure(ctx, wm, specs)
	if err != nil {
		return sdk.ConfigureResponse{}, err
	}
	var resp sdk.ConfigureResponse
	for _, r := range conf.Routes {
		resp.Routes = append(resp.Routes, sdk.Route{
			Service: r.Service, Host: r.Host, PathPrefix: r.PathPrefix, Upstream: r.Upstream,
			Redirect: r.Redirect, RedirectCode: r.RedirectCode, Websocket: r.Websocket,
			MaxBodyBytes: r.MaxBodyBytes, DialTimeout: r.DialTimeout, ResponseTimeout: r.ResponseTimeout,
		})
	}
	for _, n := range conf.Notes {
		resp.Notes = append(resp.Notes, sdk.Note{Service: n.Service, Text: n.Text})
	}
	checked := wire.CheckRoutes(wm, specs, conf.Routes)
	var errs []error
	errs = append(errs, checked.Stray...)
	for _, s := range specs {
		if e := checked.Errors[s.Name]; e != nil {
			errs = append(errs, fmt.Errorf("service %s: %w", s.Name, e))
		}
	}
	return resp, errors.Join(errs...)
}

// Health calls the plugin's Health over gRPC.
func (c *Conn) Health(ctx context.Context) (sdk.Health, error) {
	r, err := c.c.Health(ctx)
	if err != nil {
		return sdk.Health{}, err
	}
	h := sdk.Health{State: sdk.State(r.State), Message: r.Message}
	for _, ch := range r.Checks {
		h.Checks = append(h.Checks, sdk.Check{
			Service: ch.Service, Name: ch.Name, State: sdk.State(ch.State),
			Message: ch.Message, Duration: ch.Duration,
		})
	}
	return h, nil
}

// ServiceHealth returns a service's health as the daemon derives it from a
// Health answer.
func ServiceHealth(h sdk.Health, service string) (sdk.State, string) {
	r := wire.Report{State: catalog.Health(h.State), Message: h.Message}
	for _, c := range h.Checks {
		r.Checks = append(r.Checks, wire.Check{Service: c.Service, Name: c.Name, State: catalog.Health(c.State), Message: c.Message})
	}
	st, msg := wire.ServiceHealth(r, service)
	return sdk.State(st), msg
}

// Stop calls the plugin's Stop over gRPC.
func (c *Conn) Stop(ctx context.Context) error { return c.c.Stop(ctx) }

func toWire(mesh sdk.Mesh, services []sdk.ServiceSpec) (wire.Mesh, []wire.Spec) {
	wm := wire.Mesh{Booture: mesh.Booture, Domain: mesh.Domain, IPv4: mesh.IPv4, IPv6: mesh.IPv6}
	var specs []wire.Spec
	for _, s := range services {
		host := s.Host
		if host == "" {
			host = wm.ServiceHost(s.Name)
		}
		access := catalog.Access(s.Access)
		if access == "" {
			access = catalog.AccessMembers
		}
		specs = append(specs, wire.Spec{Name: s.Name, Host: host, Upstream: s.Upstream, Access: access, Settings: s.Settings})
	}
	return wm, specs
}

// DefaultMesh is the mesh context Conformance configures plugins with.
func DefaultMesh() sdk.Mesh {
	return sdk.Mesh{
		Booture: "conformance", Domain: catalog.DefaultDomain,
		IPv4: netip.MustParseAddr("10.77.1.1"), IPv6: netip.MustParseAddr("fd00:b007::1"),
	}
}

type options struct {
	services       []sdk.ServiceSpec
	mesh           sdk.Mesh
	healthDeadline time.Duration
	host           sdk.HostInfo
}

// Option tunes Conformance.
type Option func(*options)

// WithServices sets the services the plugin is configured with. By
// default: one service named after the plugin's first service, whose
// upstream is a local test server answering 200 to everything.
func WithServices(s ...sdk.ServiceSpec) Option { return func(o *options) { o.services = s } }

// WithMesh sets the mesh context (default DefaultMesh()).
func WithMesh(m sdk.Mesh) Option { return func(o *options) { o.mesh = m } }

// WithHealthDeadline sets how long Health may take (default 5 s, the
// daemon's default).
func WithHealthDeadline(d time.Duration) Option { return func(o *options) { o.healthDeadline = d } }

// WithHost sets what the plugin learns when it asks about the mesh.
func WithHost(h sdk.HostInfo) Option { return func(o *options) { o.host = h } }

// Conformance checks impl against the protocol's rules, each as a subtest:
// Describe is valid (DNS-label names, a version, stable answers),
// Configure returns valid routes for the given host names (and follows
// them when they change), Health answers within the deadline with valid
// states, Stop works.
func Conformance(t *testing.T, impl sdk.Plugin, opts ...Option) {
	t.Helper()
	o := options{mesh: DefaultMesh(), healthDeadline: 5 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	conn := Start(t, impl, o.host)
	ctx := context.Background()

	var info sdk.Info
	ok := t.Run("describe", func(t *testing.T) {
		var err error
		info, err = conn.Describe(ctx)
		if err != nil {
			t.Fatalf("describe: %v", err)
		}
		d := wire.Description{Name: info.Name, Version: info.Version, ProtocolVersion: pb.ProtocolVersion}
		for _, s := range info.Services {
			d.Services = append(d.Services, wire.ServiceInfo(s))
		}
		if err := wire.CheckDescription(d, ""); err != nil {
			t.Fatalf("invalid description: %v", err)
		}
		again, err := conn.Describe(ctx)
		if err != nil {
			t.Fatalf("second describe: %v", err)
		}
		if !reflect.DeepEqual(info, again) {
			t.Errorf("describe is not stable: %+v then %+v", info, again)
		}
	})
	if !ok {
		return
	}

	services := o.services
	if len(services) == 0 {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("OK"))
		}))
		t.Cleanup(up.Close)
		services = []sdk.ServiceSpec{{Name: info.Services[0].Name, Upstream: up.URL}}
	}

	ok = t.Run("configure", func(t *testing.T) {
		checkConfigure(t, conn, o.mesh, services)
		// The routes must follow the host names given, not a fixed guess.
		other := o.mesh
		other.Booture = "other-" + o.mesh.Booture
		if len(other.Booture) > 63 {
			other.Booture = other.Booture[:63]
		}
		renamed := make([]sdk.ServiceSpec, len(services))
		for i, s := range services {
			s.Host = ""
			renamed[i] = s
		}
		checkConfigure(t, conn, other, renamed)
		// Back to the first configuration: configure is repeatable.
		checkConfigure(t, conn, o.mesh, services)
	})
	if !ok {
		return
	}

	t.Run("health", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			hctx, cancel := context.WithTimeout(ctx, o.healthDeadline)
			start := time.Now()
			h, err := conn.Health(hctx)
			cancel()
			if err != nil {
				t.Fatalf("health (after %s): %v", time.Since(start).Round(time.Millisecond), err)
			}
			if !validState(h.State) {
				t.Errorf("health state %q is not one of healthy, degraded, unhealthy, unknown", h.State)
			}
			for _, c := range h.Checks {
				if !validState(c.State) {
					t.Errorf("check %q: state %q is not valid", c.Name, c.State)
				}
				if c.Name == "" {
					t.Errorf("check without a name: %+v", c)
				}
				if c.Service != "" && !hasService(services, c.Service) {
					t.Errorf("check %q is about unknown service %q", c.Name, c.Service)
				}
			}
		}
	})

	t.Run("stop", func(t *testing.T) {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := conn.Stop(sctx); err != nil {
			t.Fatalf("stop: %v", err)
		}
	})
}

func checkConfigure(t *testing.T, conn *Conn, mesh sdk.Mesh, services []sdk.ServiceSpec) {
	t.Helper()
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := conn.Configure(cctx, mesh, services)
	if err != nil {
		t.Fatalf("configure for booture %s: %v", mesh.Booture, err)
	}
	_, specs := toWire(mesh, services)
	for _, s := range specs {
		n := 0
		for _, r := range resp.Routes {
			if r.Service == s.Name {
				n++
				if r.Host != s.Host {
					t.Errorf("route %s%s: host is not %s", r.Host, r.PathPrefix, s.Host)
				}
			}
		}
		if n == 0 {
			t.Errorf("no route for service %s", s.Name)
		}
	}
	for _, n := range resp.Notes {
		if n.Service != "" && !hasService(services, n.Service) {
			t.Errorf("note about unknown service %q: %s", n.Service, n.Text)
		}
		if strings.TrimSpace(n.Text) == "" {
			t.Errorf("empty note for service %q", n.Service)
		}
	}
}

func validState(s sdk.State) bool {
	switch s {
	case sdk.StateHealthy, sdk.StateDegraded, sdk.StateUnhealthy, sdk.StateUnknown:
		return true
	}
	return false
}

func hasService(ss []sdk.ServiceSpec, name string) bool {
	for _, s := range ss {
		if s.Name == name {
			return true
		}
	}
	return false
}

// hostAdapter serves an sdk.HostInfo as the daemon's mesh information.
type hostAdapter struct{ h sdk.HostInfo }

func (a hostAdapter) Bootures(ctx context.Context) ([]catalog.Booture, error) {
	bs, err := a.h.Bootures(ctx)
	var out []catalog.Booture
	for _, b := range bs {
		out = append(out, catalog.Booture{Name: b.Name, IPv4: b.IPv4, IPv6: b.IPv6})
	}
	return out, err
}

func (a hostAdapter) Services(ctx context.Context) ([]catalog.Service, error) {
	ss, err := a.h.Services(ctx)
	var out []catalog.Service
	for _, s := range ss {
		out = append(out, catalog.Service{
			Name: s.Name, Booture: s.Booture, URL: s.URL, Access: catalog.Access(s.Access),
			Health: catalog.Health(s.Health), Message: s.Message,
		})
	}
	return out, err
}

type emptyMesh struct{}

func (emptyMesh) Bootures(context.Context) ([]catalog.Booture, error) { return nil, nil }
func (emptyMesh) Services(context.Context) ([]catalog.Service, error) { return nil, nil }
