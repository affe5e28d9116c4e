package sdktest

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/booture/booture/plugins/sdk"
)

// echo is a minimal plugin: one route per service to its upstream; it asks
// the host for the mesh in Configure.
type echo struct{ bootures []sdk.Booture }

func (e *echo) Describe(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "echo", Version: "1.0.0", Services: []sdk.ServiceInfo{{Name: "echo"}}}, nil
}

func (e *echo) Configure(ctx context.Context, req sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	bs, err := req.Host.Bootures(ctx)
	if err != nil {
		return sdk.ConfigureResponse{}, err
	}
	e.bootures = bs
	var resp sdk.ConfigureResponse
	for _, s := range req.Services {
		resp.Routes = append(resp.Routes, sdk.Route{Service: s.Name, Host: s.Host, PathPrefix: "/", Upstream: s.Upstream})
	}
	return resp, nil
}

func (e *echo) Health(context.Context) (sdk.Health, error) {
	return sdk.Health{State: sdk.StateHealthy}, nil
}

func (e *echo) Stop(context.Context) error { return nil }

type mesh struct{}

func (mesh) Bootures(context.Context) ([]sdk.Booture, error) {
	return []sdk.Booture{{Name: "crest", IPv4: netip.MustParseAddr("10.77.2.1")}}, nil
}
func (mesh) Services(context.Context) ([]sdk.Service, error) { return nil, nil }

func TestConformanceOfAMinimalPlugin(t *testing.T) {
	e := &echo{}
	Conformance(t, e, WithHost(mesh{}))
	if len(e.bootures) != 1 || e.bootures[0].Name != "crest" || e.bootures[0].IPv4.String() != "10.77.2.1" {
		t.Errorf("host callback gave %+v", e.bootures)
	}
}

// hardcoded ignores the host names it is given: the daemon would refuse
// its routes, and so does Conn.Configure.
type hardcoded struct{ echo }

func (h *hardcoded) Configure(ctx context.Context, req sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	return sdk.ConfigureResponse{Routes: []sdk.Route{{Service: "echo", Host: "echo.mybox.booture.internal", PathPrefix: "/", Upstream: "http://127.0.0.1:1"}}}, nil
}

func TestConfigureReportsRefusedRoutes(t *testing.T) {
	conn := Start(t, &hardcoded{}, nil)
	_, err := conn.Configure(context.Background(), DefaultMesh(), []sdk.ServiceSpec{{Name: "echo", Upstream: "http://127.0.0.1:1"}})
	if err == nil || !strings.Contains(err.Error(), `host "echo.mybox.booture.internal" is outside this booture's names`) {
		t.Errorf("err = %v", err)
	}
}
