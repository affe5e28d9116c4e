// Package mastodon is the booture plugin for Mastodon: it routes the
// service's mesh name to Mastodon's web (Puma) server with a body limit
// fit for media uploads, carries the streaming API's websockets to the
// streaming server, and judges health from GET /health (and the streaming
// server's /api/v1/streaming/health), both of which answer "OK".
//
// Settings of a service:
//
//	streaming = "http://127.0.0.1:4000"  # streaming server, when separate
//	max_body  = "100MiB"                  # largest upload (default 100MiB)
package mastodon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/booture/booture/plugins/internal/setting"
	"github.com/booture/booture/plugins/sdk"
)

// DefaultMaxBody is the default upload limit: Mastodon's own media limits
// (up to 99 MB videos in its nginx example) fit under it.
const DefaultMaxBody = 100 << 20

// Plugin is the Mastodon plugin.
type Plugin struct {
	log     *slog.Logger
	version string

	mu       sync.Mutex
	services []service
}

var _ sdk.Plugin = (*Plugin)(nil)

type service struct {
	spec      sdk.ServiceSpec
	streaming string // streaming server base URL, "" when not separate
}

// New returns the plugin.
func New(log *slog.Logger, version string) *Plugin {
	return &Plugin{log: log, version: version}
}

// Describe implements sdk.Plugin.
func (p *Plugin) Describe(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "mastodon", Version: p.version, Services: []sdk.ServiceInfo{{
		Name: "mastodon", Description: "Mastodon: the association's social network",
	}}}, nil
}

// Configure implements sdk.Plugin.
func (p *Plugin) Configure(_ context.Context, req sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	var resp sdk.ConfigureResponse
	var svcs []service
	for _, s := range req.Services {
		if s.Upstream == "" {
			return sdk.ConfigureResponse{}, fmt.Errorf("service %s: %w", s.Name, errors.New("upstream (Mastodon's web server, e.g. http://127.0.0.1:3000) is required"))
		}
		streaming, err := setting.URL(s.Settings, "streaming")
		if err != nil {
			return sdk.ConfigureResponse{}, fmt.Errorf("service %s: %w", s.Name, err)
		}
		maxBody, err := setting.Bytes(s.Settings, "max_body", DefaultMaxBody)
		if err != nil {
			return sdk.ConfigureResponse{}, fmt.Errorf("service %s: %w", s.Name, err)
		}
		streamUp := streaming
		if streamUp == "" {
			streamUp = s.Upstream
		}
		svcs = append(svcs, service{spec: s, streaming: streaming})
		resp.Routes = append(resp.Routes,
			sdk.Route{Service: s.Name, Host: s.Host, PathPrefix: "/", Upstream: s.Upstream, MaxBodyBytes: maxBody},
			sdk.Route{Service: s.Name, Host: s.Host, PathPrefix: "/api/v1/streaming", Upstream: streamUp, Websocket: true},
		)
		resp.Notes = append(resp.Notes, sdk.Note{Service: s.Name, Text: fmt.Sprintf(
			"Mastodon's LOCAL_DOMAIN (or WEB_DOMAIN) must be %s; it cannot change once accounts exist. "+
				"Mastodon redirects plain-HTTP requests to HTTPS unless the proxy says X-Forwarded-Proto: https.", s.Host)})
	}
	p.mu.Lock()
	p.services = svcs
	p.mu.Unlock()
	return resp, nil
}

// Health implements sdk.Plugin.
func (p *Plugin) Health(ctx context.Context) (sdk.Health, error) {
	p.mu.Lock()
	var checks []sdk.Checker
	for _, s := range p.services {
		checks = append(checks, sdk.HTTPProbe{
			Service: s.spec.Name, Name: "web", URL: setting.Join(s.spec.Upstream, "/health"), Body: "OK",
		})
		if s.streaming != "" {
			checks = append(checks, degraded(sdk.HTTPProbe{
				Service: s.spec.Name, Name: "streaming", URL: setting.Join(s.streaming, "/api/v1/streaming/health"), Body: "OK",
			}, "live updates are off: "))
		}
	}
	p.mu.Unlock()
	if len(checks) == 0 {
		return sdk.Health{State: sdk.StateUnknown, Message: "not configured"}, nil
	}
	return sdk.RunChecks(ctx, checks...), nil
}

// degraded turns a failing probe into a degraded check: without the
// streaming server, Mastodon still serves, only without live updates.
func degraded(c sdk.Checker, prefix string) sdk.Checker {
	return sdk.CheckFunc(func(ctx context.Context) sdk.Check {
		r := c.Check(ctx)
		if r.State == sdk.StateUnhealthy {
			r.State, r.Message = sdk.StateDegraded, prefix+r.Message
		}
		return r
	})
}

// Stop implements sdk.Plugin.
func (p *Plugin) Stop(context.Context) error { return nil }
