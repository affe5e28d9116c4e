// Package nextcloud is the booture plugin for Nextcloud: it routes the
// service's mesh name to Nextcloud (with CalDAV/CardDAV discovery
// redirects and no body limit), judges its health from status.php, and
// reports, or applies through occ, the config.php settings the mesh name
// needs (trusted_domains, trusted_proxies, overwritehost,
// overwriteprotocol, overwritecondaddr).
//
// Settings of a service:
//
//	occ = "sudo -u www-data php /var/www/nextcloud/occ"   # optional: apply settings
package nextcloud

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/booture/booture/plugins/internal/setting"
	"github.com/booture/booture/plugins/sdk"
)

// Plugin is the Nextcloud plugin.
type Plugin struct {
	log     *slog.Logger
	version string
	run     Runner

	mu       sync.Mutex
	services []*service
	cancel   context.CancelFunc // of the running occ jobs
	jobs     sync.WaitGroup
}

var _ sdk.Plugin = (*Plugin)(nil)

type service struct {
	spec     sdk.ServiceSpec
	want     Settings
	occ      []string // command that runs occ; nil when not set
	occState sdk.State
	occMsg   string
}

// New returns the plugin. run executes occ; nil means real processes.
func New(log *slog.Logger, version string, run Runner) *Plugin {
	if run == nil {
		run = ExecRunner{}
	}
	return &Plugin{log: log, version: version, run: run}
}

// Describe implements sdk.Plugin.
func (p *Plugin) Describe(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "nextcloud", Version: p.version, Services: []sdk.ServiceInfo{{
		Name: "nextcloud", Description: "Nextcloud: files, calendars, contacts",
	}}}, nil
}

// Settings are the config.php values the mesh name needs.
type Settings struct {
	TrustedDomains    []string
	TrustedProxies    []string
	OverwriteHost     string
	OverwriteProtocol string
	OverwriteCondAddr string
}

// Required returns the settings a service reached at host through the
// daemon's proxy needs: the proxy connects from loopback (or this
// booture's mesh addresses), and Nextcloud must then believe the
// forwarded host and build its links with the mesh name, while direct
// access from elsewhere keeps working (overwritecondaddr).
func Required(host string, mesh sdk.Mesh) Settings {
	proxies := []string{"127.0.0.1", "::1"}
	for _, a := range []netip.Addr{mesh.IPv4, mesh.IPv6} {
		if a.IsValid() {
			proxies = append(proxies, a.String())
		}
	}
	quoted := make([]string, len(proxies))
	for i, a := range proxies {
		quoted[i] = regexp.QuoteMeta(a)
	}
	return Settings{
		TrustedDomains:    []string{host},
		TrustedProxies:    proxies,
		OverwriteHost:     host,
		OverwriteProtocol: "http",
		OverwriteCondAddr: "^(" + strings.Join(quoted, "|") + ")$",
	}
}

// Configure implements sdk.Plugin.
func (p *Plugin) Configure(ctx context.Context, req sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	var resp sdk.ConfigureResponse
	var svcs []*service
	for _, s := range req.Services {
		if err := checkUpstream(s.Upstream); err != nil {
			return sdk.ConfigureResponse{}, fmt.Errorf("service %s: %w", s.Name, err)
		}
		svc := &service{spec: s, want: Required(s.Host, req.Mesh)}
		if occ := strings.Fields(s.Settings["occ"]); len(occ) > 0 {
			svc.occ, svc.occState, svc.occMsg = occ, sdk.StateDegraded, "applying config.php settings with occ"
			resp.Notes = append(resp.Notes, sdk.Note{Service: s.Name, Text: "applying trusted_domains, trusted_proxies and overwrite* settings with occ"})
		} else {
			resp.Notes = append(resp.Notes, sdk.Note{Service: s.Name, Text: "set in Nextcloud's config.php (or set the occ setting to let booture do it): " + svc.want.PHP()})
		}
		svcs = append(svcs, svc)
		resp.Routes = append(resp.Routes,
			sdk.Route{
				Service: s.Name, Host: s.Host, PathPrefix: "/", Upstream: s.Upstream,
				// Uploads of any size; WebDAV moves of big files can take
				// minutes before the answer.
				MaxBodyBytes: -1, ResponseTimeout: 10 * time.Minute,
			},
			sdk.Route{Service: s.Name, Host: s.Host, PathPrefix: "/.well-known/caldav", Redirect: "/remote.php/dav/", RedirectCode: http.StatusMovedPermanently},
			sdk.Route{Service: s.Name, Host: s.Host, PathPrefix: "/.well-known/carddav", Redirect: "/remote.php/dav/", RedirectCode: http.StatusMovedPermanently},
		)
	}
	p.mu.Lock()
	if p.cancel != nil {
		p.cancel()
	}
	jctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.services = svcs
	for _, svc := range svcs {
		if svc.occ != nil {
			p.jobs.Add(1)
			go p.apply(jctx, svc)
		}
	}
	p.mu.Unlock()
	return resp, nil
}

func checkUpstream(u string) error {
	if u == "" {
		return errors.New("upstream (Nextcloud's local URL, e.g. http://127.0.0.1:8080) is required")
	}
	if _, err := setting.URL(map[string]string{"upstream": u}, "upstream"); err != nil {
		return err
	}
	return nil
}

// apply sets the required settings with occ, in the background: occ takes
// a PHP start per call.
func (p *Plugin) apply(ctx context.Context, svc *service) {
	defer p.jobs.Done()
	occ := Occ{Cmd: svc.occ, Run: p.run}
	changed, err := occ.Apply(ctx, svc.want)
	p.mu.Lock()
	defer p.mu.Unlock()
	if ctx.Err() != nil {
		return // reconfigured or stopped meanwhile
	}
	if err != nil {
		svc.occState, svc.occMsg = sdk.StateDegraded, "applying settings with occ: "+err.Error()
		p.log.Warn("applying Nextcloud settings failed", "service", svc.spec.Name, "error", err)
		return
	}
	svc.occState, svc.occMsg = sdk.StateHealthy, ""
	if len(changed) > 0 {
		p.log.Info("Nextcloud settings applied", "service", svc.spec.Name, "changed", strings.Join(changed, ", "))
	}
}

// Health implements sdk.Plugin.
func (p *Plugin) Health(ctx context.Context) (sdk.Health, error) {
	p.mu.Lock()
	var checks []sdk.Checker
	for _, svc := range p.services {
		checks = append(checks, StatusProbe(svc.spec))
		if svc.occ != nil {
			c := sdk.Check{Service: svc.spec.Name, Name: "config", State: svc.occState, Message: svc.occMsg}
			checks = append(checks, sdk.CheckFunc(func(context.Context) sdk.Check { return c }))
		}
	}
	p.mu.Unlock()
	if len(checks) == 0 {
		return sdk.Health{State: sdk.StateUnknown, Message: "not configured"}, nil
	}
	return sdk.RunChecks(ctx, checks...), nil
}

// StatusProbe checks GET /status.php, asked under the mesh name so that a
// missing trusted domain shows. A healthy Nextcloud answers 200 with
// {"installed":true,"maintenance":false,"needsDbUpgrade":false,...}.
func StatusProbe(spec sdk.ServiceSpec) sdk.HTTPProbe {
	return sdk.HTTPProbe{
		Service: spec.Name, Name: "status",
		URL: setting.Join(spec.Upstream, "/status.php"), Host: spec.Host,
		Classify: func(code int, h http.Header, body []byte) (sdk.State, string, bool) {
			switch {
			case code == http.StatusBadRequest && strings.Contains(string(body), "Trusted domain error"):
				return sdk.StateDegraded, fmt.Sprintf("Nextcloud does not trust the name %s: add it to trusted_domains (or set the occ setting)", spec.Host), true
			case h.Get("X-Nextcloud-Maintenance-Mode") == "1":
				return sdk.StateUnhealthy, "Nextcloud is in maintenance mode", true
			}
			return "", "", false
		},
		JSON: []sdk.JSONField{
			{Path: "installed", Want: true, Message: "Nextcloud is not installed yet"},
			{Path: "maintenance", Want: false, Message: "Nextcloud is in maintenance mode"},
			{Path: "needsDbUpgrade", Want: false, Message: "Nextcloud needs a database upgrade (occ upgrade)"},
		},
	}
}

// Stop implements sdk.Plugin: it ends occ jobs in flight.
func (p *Plugin) Stop(context.Context) error {
	p.mu.Lock()
	if p.cancel != nil {
		p.cancel()
	}
	p.mu.Unlock()
	p.jobs.Wait()
	return nil
}

// PHP renders the settings as config.php entries.
func (s Settings) PHP() string {
	q := func(v string) string { return "'" + strings.ReplaceAll(v, "'", `\'`) + "'" }
	list := func(vs []string) string {
		out := make([]string, len(vs))
		for i, v := range vs {
			out[i] = q(v)
		}
		return "[" + strings.Join(out, ", ") + "]"
	}
	return fmt.Sprintf("'trusted_domains' => %s (added to the existing ones), 'trusted_proxies' => %s, 'overwritehost' => %s, 'overwriteprotocol' => %s, 'overwritecondaddr' => %s",
		list(s.TrustedDomains), list(s.TrustedProxies), q(s.OverwriteHost), q(s.OverwriteProtocol), q(s.OverwriteCondAddr))
}
