// Package peertube is the booture plugin for PeerTube: it routes the
// service's mesh name to PeerTube with no body limit and long timeouts for
// (resumable) video uploads, carries the websockets of /socket.io
// (notifications, live chat) and /tracker/socket (the WebTorrent tracker),
// and judges health from GET /api/v1/ping, which answers "pong".
//
// Settings of a service:
//
//	max_body       = "unlimited"  # largest request body (default: no limit)
//	upload_timeout = "1h"         # wait for the answer to an upload (default 1h)
package peertube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/booture/booture/plugins/internal/setting"
	"github.com/booture/booture/plugins/sdk"
)

// Plugin is the PeerTube plugin.
type Plugin struct {
	log     *slog.Logger
	version string

	mu       sync.Mutex
	services []sdk.ServiceSpec
}

var _ sdk.Plugin = (*Plugin)(nil)

// New returns the plugin.
func New(log *slog.Logger, version string) *Plugin {
	return &Plugin{log: log, version: version}
}

// Describe implements sdk.Plugin.
func (p *Plugin) Describe(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "peertube", Version: p.version, Services: []sdk.ServiceInfo{{
		Name: "peertube", Description: "PeerTube: the association's videos",
	}}}, nil
}

// Configure implements sdk.Plugin.
func (p *Plugin) Configure(_ context.Context, req sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	var resp sdk.ConfigureResponse
	for _, s := range req.Services {
		if s.Upstream == "" {
			return sdk.ConfigureResponse{}, fmt.Errorf("service %s: %w", s.Name, errors.New("upstream (PeerTube's local URL, e.g. http://127.0.0.1:9000) is required"))
		}
		maxBody, err := setting.Bytes(s.Settings, "max_body", -1)
		if err != nil {
			return sdk.ConfigureResponse{}, fmt.Errorf("service %s: %w", s.Name, err)
		}
		uploadTimeout, err := setting.Duration(s.Settings, "upload_timeout", time.Hour)
		if err != nil {
			return sdk.ConfigureResponse{}, fmt.Errorf("service %s: %w", s.Name, err)
		}
		route := func(prefix string) sdk.Route {
			return sdk.Route{Service: s.Name, Host: s.Host, PathPrefix: prefix, Upstream: s.Upstream, MaxBodyBytes: maxBody}
		}
		r := route("/")
		r.ResponseTimeout = 10 * time.Minute
		resp.Routes = append(resp.Routes, r)
		for _, ws := range []string{"/socket.io", "/tracker/socket"} {
			r := route(ws)
			r.Websocket = true
			resp.Routes = append(resp.Routes, r)
		}
		// Uploads take whole videos (legacy) or large chunks (resumable),
		// answered only once PeerTube has them all.
		for _, up := range []string{"/api/v1/videos/upload", "/api/v1/videos/upload-resumable", "/api/v1/videos/imports"} {
			r := route(up)
			r.ResponseTimeout = uploadTimeout
			resp.Routes = append(resp.Routes, r)
		}
		resp.Notes = append(resp.Notes, sdk.Note{Service: s.Name, Text: fmt.Sprintf(
			"in PeerTube's production.yaml: webserver.hostname %s, webserver.port 80, webserver.https false, "+
				"and trust_proxy including 'loopback'; the hostname cannot change once videos are federated", s.Host)})
	}
	p.mu.Lock()
	p.services = req.Services
	p.mu.Unlock()
	return resp, nil
}

// Health implements sdk.Plugin.
func (p *Plugin) Health(ctx context.Context) (sdk.Health, error) {
	p.mu.Lock()
	var checks []sdk.Checker
	for _, s := range p.services {
		checks = append(checks, sdk.HTTPProbe{
			Service: s.Name, Name: "ping", URL: setting.Join(s.Upstream, "/api/v1/ping"), Body: "pong",
		})
	}
	p.mu.Unlock()
	if len(checks) == 0 {
		return sdk.Health{State: sdk.StateUnknown, Message: "not configured"}, nil
	}
	return sdk.RunChecks(ctx, checks...), nil
}

// Stop implements sdk.Plugin.
func (p *Plugin) Stop(context.Context) error { return nil }
