package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"sync"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/booture/booture/plugins/proto"
)

// GRPCPlugin adapts a Plugin to go-plugin's plugin.GRPCPlugin (server side
// only). Serve uses it, and sdktest to run a plugin in-process; plugin
// authors need not touch it.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Plugin
	Log  *slog.Logger
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers the plugin's gRPC service.
func (p *GRPCPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	log := p.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pb.RegisterPluginServer(s, &server{impl: p.Impl, broker: broker, log: log})
	return nil
}

// GRPCClient is not available from the SDK: only the daemon is a client.
func (p *GRPCPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("sdk: plugins do not dispense clients")
}

// server serves the Plugin gRPC service with a Plugin implementation.
type server struct {
	pb.UnimplementedPluginServer
	impl   Plugin
	broker *plugin.GRPCBroker
	log    *slog.Logger

	mu   sync.Mutex
	host *hostClient // per broker id, kept across Configure calls
}

// guard turns a panic of the implementation into an error, so that one bad
// call does not end the process (the host would see a crash).
func (s *server) guard(rpc string, err *error) {
	if r := recover(); r != nil {
		s.log.Error("plugin panicked", "rpc", rpc, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		*err = status.Errorf(codes.Internal, "%s: plugin panicked: %v", rpc, r)
	}
}

func (s *server) Describe(ctx context.Context, _ *pb.DescribeRequest) (resp *pb.DescribeResponse, err error) {
	defer s.guard("describe", &err)
	info, err := s.impl.Describe(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unknown, "describe: %v", err)
	}
	resp = &pb.DescribeResponse{Name: info.Name, Version: info.Version, ProtocolVersion: pb.ProtocolVersion}
	for _, si := range info.Services {
		resp.Services = append(resp.Services, &pb.ServiceInfo{Name: si.Name, Description: si.Description})
	}
	return resp, nil
}

func (s *server) Configure(ctx context.Context, req *pb.ConfigureRequest) (resp *pb.ConfigureResponse, err error) {
	defer s.guard("configure", &err)
	creq := ConfigureRequest{Mesh: meshFromProto(req.GetMesh()), Host: s.hostInfo(req.GetHostBrokerId())}
	for _, sp := range req.GetServices() {
		creq.Services = append(creq.Services, ServiceSpec{
			Name: sp.GetName(), Host: sp.GetHost(), Upstream: sp.GetUpstream(),
			Access: sp.GetAccess(), Settings: sp.GetSettings(),
		})
	}
	cresp, err := s.impl.Configure(ctx, creq)
	if err != nil {
		return nil, status.Errorf(codes.Unknown, "configure: %v", err)
	}
	resp = &pb.ConfigureResponse{}
	for _, r := range cresp.Routes {
		resp.Routes = append(resp.Routes, &pb.Route{
			Service: r.Service, Host: r.Host, PathPrefix: r.PathPrefix,
			Upstream: r.Upstream, Redirect: r.Redirect, RedirectCode: int32(r.RedirectCode),
			Websocket: r.Websocket, MaxBodyBytes: r.MaxBodyBytes,
			DialTimeoutMs:     r.DialTimeout.Milliseconds(),
			ResponseTimeoutMs: r.ResponseTimeout.Milliseconds(),
		})
	}
	for _, n := range cresp.Notes {
		resp.Notes = append(resp.Notes, &pb.Note{Service: n.Service, Text: n.Text})
	}
	return resp, nil
}

func (s *server) Health(ctx context.Context, _ *pb.HealthRequest) (resp *pb.HealthResponse, err error) {
	defer s.guard("health", &err)
	h, err := s.impl.Health(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unknown, "health: %v", err)
	}
	resp = &pb.HealthResponse{State: stateToProto(h.State), Message: h.Message}
	for _, c := range h.Checks {
		resp.Checks = append(resp.Checks, &pb.Check{
			Service: c.Service, Name: c.Name, State: stateToProto(c.State),
			Message: c.Message, DurationMs: c.Duration.Milliseconds(),
		})
	}
	return resp, nil
}

func (s *server) Stop(ctx context.Context, _ *pb.StopRequest) (resp *pb.StopResponse, err error) {
	defer s.guard("stop", &err)
	if err := s.impl.Stop(ctx); err != nil {
		return nil, status.Errorf(codes.Unknown, "stop: %v", err)
	}
	return &pb.StopResponse{}, nil
}

func (s *server) hostInfo(id uint32) HostInfo {
	if id == 0 || s.broker == nil {
		return noHost{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.host == nil || s.host.id != id {
		if s.host != nil {
			s.host.close()
		}
		s.host = &hostClient{id: id, broker: s.broker}
	}
	return s.host
}

// hostClient reaches the daemon's Host service through the broker. It
// dials on first use: most plugins never call back.
type hostClient struct {
	id     uint32
	broker *plugin.GRPCBroker

	mu   sync.Mutex
	conn *grpc.ClientConn
}

func (h *hostClient) client() (pb.HostClient, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn == nil {
		conn, err := h.broker.Dial(h.id)
		if err != nil {
			return nil, fmt.Errorf("dialing host service: %w", err)
		}
		h.conn = conn
	}
	return pb.NewHostClient(h.conn), nil
}

func (h *hostClient) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn != nil {
		h.conn.Close()
		h.conn = nil
	}
}

func (h *hostClient) Bootures(ctx context.Context) ([]Booture, error) {
	c, err := h.client()
	if err != nil {
		return nil, err
	}
	resp, err := c.ListBootures(ctx, &pb.ListBooturesRequest{})
	if err != nil {
		return nil, fmt.Errorf("listing bootures: %w", err)
	}
	var out []Booture
	for _, b := range resp.GetBootures() {
		out = append(out, Booture{Name: b.GetName(), IPv4: parseAddr(b.GetMeshIpv4()), IPv6: parseAddr(b.GetMeshIpv6())})
	}
	return out, nil
}

func (h *hostClient) Services(ctx context.Context) ([]Service, error) {
	c, err := h.client()
	if err != nil {
		return nil, err
	}
	resp, err := c.ListServices(ctx, &pb.ListServicesRequest{})
	if err != nil {
		return nil, fmt.Errorf("listing services: %w", err)
	}
	var out []Service
	for _, s := range resp.GetServices() {
		out = append(out, Service{
			Name: s.GetName(), Booture: s.GetBooture(), URL: s.GetUrl(),
			Access: s.GetAccess(), Health: State(s.GetHealth()), Message: s.GetMessage(),
		})
	}
	return out, nil
}

// noHost answers when the host offered no callback service.
type noHost struct{}

var errNoHost = errors.New("the host offers no mesh information")

func (noHost) Bootures(context.Context) ([]Booture, error) { return nil, errNoHost }
func (noHost) Services(context.Context) ([]Service, error) { return nil, errNoHost }

// meshFromProto converts the wire form of the mesh context.
func meshFromProto(m *pb.MeshContext) Mesh {
	return Mesh{
		Booture: m.GetBooture(), Domain: m.GetDomain(),
		IPv4: parseAddr(m.GetMeshIpv4()), IPv6: parseAddr(m.GetMeshIpv6()),
	}
}

func parseAddr(s string) netip.Addr {
	a, _ := netip.ParseAddr(s) // invalid (zero) when empty or garbled
	return a
}

// stateToProto converts a State to its wire form.
func stateToProto(s State) pb.HealthState {
	switch s {
	case StateHealthy:
		return pb.HealthState_HEALTH_STATE_HEALTHY
	case StateDegraded:
		return pb.HealthState_HEALTH_STATE_DEGRADED
	case StateUnhealthy:
		return pb.HealthState_HEALTH_STATE_UNHEALTHY
	}
	return pb.HealthState_HEALTH_STATE_UNKNOWN
}
