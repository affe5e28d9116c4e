// Package wire is the daemon's side of the plugin protocol, shared by the
// plugin host and the SDK's conformance suite: a typed client over the
// generated gRPC code, the go-plugin glue that also serves the Host service
// to the plugin through the broker, and the rules a plugin's answers must
// follow (names, routes).
package wire

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/booture/booture/catalog"
	pb "github.com/booture/booture/plugins/proto"
)

// MeshInfo answers plugins' questions about the mesh (the Host service).
type MeshInfo interface {
	Bootures(ctx context.Context) ([]catalog.Booture, error)
	Services(ctx context.Context) ([]catalog.Service, error)
}

// Mesh is the context a plugin is configured with.
type Mesh struct {
	Booture string
	Domain  string
	IPv4    netip.Addr
	IPv6    netip.Addr
}

// ServiceHost returns SERVICE.BOOTURE.DOMAIN.
func (m Mesh) ServiceHost(service string) string {
	return service + "." + m.Booture + "." + m.Domain
}

// Spec is a service as sent to its plugin.
type Spec struct {
	Name     string
	Host     string
	Upstream string
	Access   catalog.Access
	Settings map[string]string
}

// Description is a plugin's answer to Describe.
type Description struct {
	Name            string
	Version         string
	Services        []ServiceInfo
	ProtocolVersion int
}

// ServiceInfo is a kind of service a plugin offers.
type ServiceInfo struct {
	Name        string
	Description string
}

// Note is a message for the admin about a service.
type Note struct {
	Service string
	Text    string
}

// Configured is a plugin's answer to Configure, not yet validated.
type Configured struct {
	Routes []catalog.Route
	Notes  []Note
}

// Report is a plugin's answer to Health.
type Report struct {
	State   catalog.Health
	Message string
	Checks  []Check
}

// Check is one probe of a Report.
type Check struct {
	Service  string
	Name     string
	State    catalog.Health
	Message  string
	Duration time.Duration
}

// Plugin is the client half of go-plugin's GRPCPlugin. When Host is set it
// is served to the plugin through the broker.
type Plugin struct {
	plugin.NetRPCUnsupportedPlugin
	Host MeshInfo
}

var _ plugin.GRPCPlugin = (*Plugin)(nil)

// GRPCServer is not available: the daemon does not serve plugins.
func (p *Plugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("wire: the host side serves no plugin")
}

// GRPCClient returns a *Client. It starts serving the Host service first
// (AcceptAndServe) so that the broker id sent in Configure is live.
func (p *Plugin) GRPCClient(_ context.Context, broker *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	c := &Client{rpc: pb.NewPluginClient(conn)}
	if p.Host != nil {
		c.brokerID = broker.NextId()
		host := &hostServer{info: p.Host}
		go broker.AcceptAndServe(c.brokerID, func(opts []grpc.ServerOption) *grpc.Server {
			s := grpc.NewServer(opts...)
			pb.RegisterHostServer(s, host)
			return s
		})
	}
	return c, nil
}

// PluginSets returns the VersionedPlugins of the host's ClientConfig.
func PluginSets(host MeshInfo) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		pb.ProtocolVersion: {pb.PluginKey: &Plugin{Host: host}},
	}
}

// Dispense returns the protocol client of a started go-plugin client.
func Dispense(cp plugin.ClientProtocol) (*Client, error) {
	raw, err := cp.Dispense(pb.PluginKey)
	if err != nil {
		return nil, fmt.Errorf("dispensing plugin: %w", err)
	}
	c, ok := raw.(*Client)
	if !ok {
		return nil, fmt.Errorf("dispensing plugin: unexpected type %T", raw)
	}
	return c, nil
}

// Client calls a plugin.
type Client struct {
	rpc      pb.PluginClient
	brokerID uint32
}

// Describe asks the plugin who it is.
func (c *Client) Describe(ctx context.Context) (Description, error) {
	resp, err := c.rpc.Describe(ctx, &pb.DescribeRequest{ProtocolVersion: pb.ProtocolVersion})
	if err != nil {
		return Description{}, fmt.Errorf("describe: %w", err)
	}
	d := Description{Name: resp.GetName(), Version: resp.GetVersion(), ProtocolVersion: int(resp.GetProtocolVersion())}
	for _, s := range resp.GetServices() {
		d.Services = append(d.Services, ServiceInfo{Name: s.GetName(), Description: s.GetDescription()})
	}
	return d, nil
}

// Configure sends the plugin its services and returns its routes as given
// (Access unset, not validated: see CheckRoutes).
func (c *Client) Configure(ctx context.Context, mesh Mesh, specs []Spec) (Configured, error) {
	req := &pb.ConfigureRequest{
		Mesh:         &pb.MeshContext{Booture: mesh.Booture, Domain: mesh.Domain, MeshIpv4: addrString(mesh.IPv4), MeshIpv6: addrString(mesh.IPv6)},
		HostBrokerId: c.brokerID,
	}
	for _, s := range specs {
		req.Services = append(req.Services, &pb.ServiceSpec{
			Name: s.Name, Host: s.Host, Upstream: s.Upstream, Access: string(s.Access), Settings: s.Settings,
		})
	}
	resp, err := c.rpc.Configure(ctx, req)
	if err != nil {
		return Configured{}, fmt.Errorf("configure: %w", err)
	}
	var out Configured
	for _, r := range resp.GetRoutes() {
		out.Routes = append(out.Routes, catalog.Route{
			Service: r.GetService(), Host: r.GetHost(), PathPrefix: r.GetPathPrefix(),
			Upstream: r.GetUpstream(), Redirect: r.GetRedirect(), RedirectCode: int(r.GetRedirectCode()),
			Websocket: r.GetWebsocket(), MaxBodyBytes: r.GetMaxBodyBytes(),
			DialTimeout:     time.Duration(r.GetDialTimeoutMs()) * time.Millisecond,
			ResponseTimeout: time.Duration(r.GetResponseTimeoutMs()) * time.Millisecond,
		})
	}
	for _, n := range resp.GetNotes() {
		out.Notes = append(out.Notes, Note{Service: n.GetService(), Text: n.GetText()})
	}
	return out, nil
}

// Health asks the plugin to probe its services.
func (c *Client) Health(ctx context.Context) (Report, error) {
	resp, err := c.rpc.Health(ctx, &pb.HealthRequest{})
	if err != nil {
		return Report{}, fmt.Errorf("health: %w", err)
	}
	r := Report{State: healthFromProto(resp.GetState()), Message: resp.GetMessage()}
	for _, ch := range resp.GetChecks() {
		r.Checks = append(r.Checks, Check{
			Service: ch.GetService(), Name: ch.GetName(), State: healthFromProto(ch.GetState()),
			Message: ch.GetMessage(), Duration: time.Duration(ch.GetDurationMs()) * time.Millisecond,
		})
	}
	return r, nil
}

// Stop asks the plugin to release its resources.
func (c *Client) Stop(ctx context.Context) error {
	if _, err := c.rpc.Stop(ctx, &pb.StopRequest{}); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	return nil
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func healthFromProto(s pb.HealthState) catalog.Health {
	switch s {
	case pb.HealthState_HEALTH_STATE_HEALTHY:
		return catalog.HealthHealthy
	case pb.HealthState_HEALTH_STATE_DEGRADED:
		return catalog.HealthDegraded
	case pb.HealthState_HEALTH_STATE_UNHEALTHY:
		return catalog.HealthUnhealthy
	}
	return catalog.HealthUnknown
}

// hostServer serves MeshInfo as the Host gRPC service.
type hostServer struct {
	pb.UnimplementedHostServer
	info MeshInfo
}

func (h *hostServer) ListBootures(ctx context.Context, _ *pb.ListBooturesRequest) (*pb.ListBooturesResponse, error) {
	bs, err := h.info.Bootures(ctx)
	if err != nil {
		return nil, err
	}
	resp := &pb.ListBooturesResponse{}
	for _, b := range bs {
		resp.Bootures = append(resp.Bootures, &pb.Booture{Name: b.Name, MeshIpv4: addrString(b.IPv4), MeshIpv6: addrString(b.IPv6)})
	}
	return resp, nil
}

func (h *hostServer) ListServices(ctx context.Context, _ *pb.ListServicesRequest) (*pb.ListServicesResponse, error) {
	ss, err := h.info.Services(ctx)
	if err != nil {
		return nil, err
	}
	resp := &pb.ListServicesResponse{}
	for _, s := range ss {
		resp.Services = append(resp.Services, &pb.Service{
			Name: s.Name, Booture: s.Booture, Url: s.URL, Access: string(s.Access),
			Health: string(s.Health), Message: s.Message,
		})
	}
	return resp, nil
}
