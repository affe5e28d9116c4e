package lab_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/internal/lab"
)

// TestServices is the services' end to end test: three bootures; a web site
// served by the example third-party plugin on booture 2; a member of
// booture 1 with a real wg-quick client and the booture's DNS opens it by
// name, and the portals; access levels are enforced by source address; the
// catalog and its health replicate to every booture; names outside the mesh
// fail fast on an offline LAN.
func TestServices(t *testing.T) {
	t.Parallel()
	bin, err := lab.Build(context.Background(), "./examples/staticsite")
	must(t, err)
	l := lab.New(t, lab.Options{Hosts: 3, Binaries: bin})
	h1, h2, h3 := l.H(1), l.H(2), l.H(3)

	// Booture 2's plugin directory and config: a mesh-wide site and a
	// members-only one.
	dir := t.TempDir()
	pluginReadable(t, dir)
	plugins := filepath.Join(dir, "plugins")
	must(t, os.MkdirAll(plugins, 0o755))
	raw, err := os.ReadFile(bin.Path("staticsite"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(plugins, "booture-plugin-staticsite"), raw, 0o755))
	www := map[string]string{"site": "Bonjour from the site", "private": "Only for h2's members"}
	for name, text := range www {
		d := filepath.Join(dir, name)
		must(t, os.MkdirAll(d, 0o755))
		must(t, os.WriteFile(filepath.Join(d, "index.html"), []byte("<h1>"+text+"</h1>\n"), 0o644))
	}
	conf := filepath.Join(dir, "booture.toml")
	must(t, os.WriteFile(conf, []byte(fmt.Sprintf(`
[[service]]
plugin = "staticsite"
name   = "site"
access = "mesh"
[service.settings]
root = %q

[[service]]
plugin = "staticsite"
name   = "private"
access = "members"
[service.settings]
root = %q
`, filepath.Join(dir, "site"), filepath.Join(dir, "private"))), 0o644))
	h2.Args = []string{"--config", conf, "--plugin-dir", plugins, "--metrics", "127.0.0.1:9477"}

	must(t, h1.Start())
	must(t, l.StartAll(h2, h3))
	must(t, lab.JoinAll(h1, h2, h3))
	must(t, lab.WaitMesh(30*time.Second, h1, h2, h3))

	// The catalog of the whole mesh, with health, on every booture.
	siteURL := "http://site." + h2.Name + ".booture.internal/"
	for _, h := range []*lab.Host{h1, h2, h3} {
		must(t, lab.Eventually(context.Background(), 30*time.Second, 200*time.Millisecond, func() error {
			var svcs []api.Service
			if err := h.CLIJSON(&svcs, "services"); err != nil {
				return err
			}
			found := 0
			for _, s := range svcs {
				if s.Booture == h2.Name && s.Health == "healthy" && (s.URL == siteURL && s.Access == "mesh" || s.Name == "private" && s.Access == "members") {
					found++
				}
			}
			if found != 2 {
				return fmt.Errorf("%s's catalog: %+v", h.Name, svcs)
			}
			return nil
		}))
	}
	var pls []api.Plugin
	must(t, h2.CLIJSON(&pls, "plugin", "list"))
	running := false
	for _, p := range pls {
		running = running || p.Name == "staticsite" && p.State == "running" && len(p.Services) == 2 && len(p.SHA256) == 64
	}
	if !running {
		t.Fatalf("plugin list on h2: %+v", pls)
	}

	// A member of h1 with a real client, using h1's DNS.
	alice, err := l.AddMember()
	must(t, err)
	must(t, alice.Up(memberAdd(t, h1, "alice")))
	curl := func(url string) lab.Result {
		return alice.NS.Run("curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}", url)
	}
	var r lab.Result
	must(t, lab.Eventually(context.Background(), pingWait, 500*time.Millisecond, func() error {
		r = curl(siteURL)
		return r.Error()
	}))
	if !strings.Contains(r.Stdout, www["site"]) || !strings.HasSuffix(r.Stdout, "200") {
		t.Fatalf("alice fetching %s: %q", siteURL, r.Stdout)
	}
	// The portals: h2's lists its services; h1's lists the mesh's.
	for _, h := range []*lab.Host{h2, h1} {
		r = curl("http://" + h.Name + ".booture.internal/")
		must(t, r.Error())
		if !strings.Contains(r.Stdout, siteURL) || !strings.HasSuffix(r.Stdout, "200") {
			t.Fatalf("portal of %s does not list %s:\n%s", h.Name, siteURL, r.Stdout)
		}
	}
	// Access: "members" means h2's members only.
	r = curl("http://private." + h2.Name + ".booture.internal/")
	must(t, r.Error())
	if !strings.HasSuffix(r.Stdout, "403") || strings.Contains(r.Stdout, www["private"]) {
		t.Fatalf("a member of h1 got h2's members-only service: %q", r.Stdout)
	}
	// Metrics: services' health, plugins, proxy requests.
	r = h2.NS.Run("curl", "-sS", "--max-time", "5", "http://127.0.0.1:9477/metrics")
	must(t, r.Error())
	for _, want := range []string{
		`booture_service_health{health="healthy",service="site"} 1`,
		`booture_plugin_state{plugin="staticsite",state="running"} 1`,
		`booture_gateway_http_requests_total{code="200",service="site"}`,
		`booture_gateway_http_requests_total{code="403",service="private"}`,
	} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("h2's metrics lack %s", want)
		}
	}

	// Offline, a name outside the mesh fails at once (no upstream).
	start := time.Now()
	r = alice.NS.Run("getent", "hosts", "www.example.org")
	if r.Code == 0 {
		t.Fatalf("an outside name resolved offline: %q", r.Stdout)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("resolving an outside name offline took %v: it should fail at once", took)
	}
	// An unknown name of the mesh is NXDOMAIN (getent exit code 2).
	if r = alice.NS.Run("getent", "hosts", "nothing."+h2.Name+".booture.internal"); r.Code != 2 {
		t.Errorf("unknown mesh name: getent exit %d (%q), want 2 (not found)", r.Code, r.Stderr)
	}

	// A health change shows everywhere within seconds: the site's folder
	// disappears.
	must(t, os.Rename(filepath.Join(dir, "site"), filepath.Join(dir, "site.gone")))
	must(t, lab.Eventually(context.Background(), 40*time.Second, 500*time.Millisecond, func() error {
		var svcs []api.Service
		if err := h3.CLIJSON(&svcs, "services"); err != nil {
			return err
		}
		for _, s := range svcs {
			if s.URL == siteURL && s.Health == "unhealthy" {
				return nil
			}
		}
		return fmt.Errorf("h3 does not see the site unhealthy yet: %+v", svcs)
	}))

	// A booture that leaves takes its services out of the catalog.
	r = h2.CLI("leave")
	must(t, r.Error())
	must(t, lab.Eventually(context.Background(), 10*time.Second, 200*time.Millisecond, func() error {
		var svcs []api.Service
		if err := h1.CLIJSON(&svcs, "services"); err != nil {
			return err
		}
		if len(svcs) != 0 {
			return fmt.Errorf("h1 still lists %+v", svcs)
		}
		return nil
	}))
}
