package nextcloud

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/booture/booture/internal/waitfor"
	"github.com/booture/booture/plugins/sdk"
	"github.com/booture/booture/plugins/sdk/sdktest"
)

// fakeNextcloud answers as Nextcloud's status.php and base.php do
// (nextcloud/server: status.php, lib/base.php's trusted-domain check and
// maintenance page).
type fakeNextcloud struct {
	mu             sync.Mutex
	installed      bool
	maintenance    bool
	needsDbUpgrade bool
	broken         bool
	trusted        []string
}

func (f *fakeNextcloud) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.broken {
		// status.php's catch: http_response_code(500), empty body.
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	host := r.Host
	if h, _, ok := strings.Cut(host, ":"); ok {
		host = h
	}
	if f.installed && host != "localhost" && host != "127.0.0.1" && !slices.Contains(f.trusted, host) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error": "Trusted domain error.", "code": 15}`)
		return
	}
	if r.URL.Path == "/status.php" {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"installed":%t,"maintenance":%t,"needsDbUpgrade":%t,"version":"29.0.4.1","versionstring":"29.0.4","edition":"","productname":"Nextcloud","extendedSupport":false}`,
			f.installed, f.maintenance, f.needsDbUpgrade)
		return
	}
	if f.maintenance {
		w.Header().Set("X-Nextcloud-Maintenance-Mode", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, "<!DOCTYPE html><html><body>Maintenance mode</body></html>")
		return
	}
	fmt.Fprint(w, "<!DOCTYPE html><html><body>Nextcloud</body></html>")
}

func newFake(t *testing.T, f *fakeNextcloud) *httptest.Server {
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	return s
}

const host = "nextcloud.conformance.booture.internal"

func TestConformance(t *testing.T) {
	up := newFake(t, &fakeNextcloud{installed: true, trusted: []string{host}})
	sdktest.Conformance(t, New(slog.New(slog.DiscardHandler), "test", nil),
		sdktest.WithServices(sdk.ServiceSpec{Name: "nextcloud", Upstream: up.URL}))
}

func configure(t *testing.T, p *Plugin, spec sdk.ServiceSpec) (*sdktest.Conn, sdk.ConfigureResponse) {
	t.Helper()
	conn := sdktest.Start(t, p, nil)
	resp, err := conn.Configure(context.Background(), sdktest.DefaultMesh(), []sdk.ServiceSpec{spec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(context.Background()) })
	return conn, resp
}

func TestRoutes(t *testing.T) {
	up := newFake(t, &fakeNextcloud{installed: true, trusted: []string{host}})
	_, resp := configure(t, New(slog.New(slog.DiscardHandler), "test", nil), sdk.ServiceSpec{Name: "nextcloud", Upstream: up.URL})
	got := map[string]sdk.Route{}
	for _, r := range resp.Routes {
		got[r.PathPrefix] = r
	}
	if r := got["/"]; r.Upstream != up.URL || r.MaxBodyBytes >= 0 || r.Websocket {
		t.Errorf("/ = %+v", r)
	}
	for _, p := range []string{"/.well-known/caldav", "/.well-known/carddav"} {
		if r := got[p]; r.Redirect != "/remote.php/dav/" || r.RedirectCode != 301 || r.Upstream != "" {
			t.Errorf("%s = %+v", p, r)
		}
	}
	if len(resp.Notes) != 1 || !strings.Contains(resp.Notes[0].Text, "'overwritehost' => '"+host+"'") ||
		!strings.Contains(resp.Notes[0].Text, `'overwritecondaddr' => '^(127\.0\.0\.1|::1|10\.77\.1\.1|fd00:b007::1)$'`) {
		t.Errorf("notes = %+v", resp.Notes)
	}
}

func TestHealth(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fake  *fakeNextcloud
		down  bool
		state sdk.State
		msg   string
	}{
		{"healthy", &fakeNextcloud{installed: true, trusted: []string{host}}, false, sdk.StateHealthy, ""},
		{"maintenance", &fakeNextcloud{installed: true, maintenance: true, trusted: []string{host}}, false, sdk.StateUnhealthy, "maintenance mode"},
		{"db upgrade", &fakeNextcloud{installed: true, needsDbUpgrade: true, trusted: []string{host}}, false, sdk.StateUnhealthy, "database upgrade"},
		{"not installed", &fakeNextcloud{}, false, sdk.StateUnhealthy, "not installed"},
		{"untrusted name", &fakeNextcloud{installed: true, trusted: []string{"cloud.example.org"}}, false, sdk.StateDegraded, "does not trust the name " + host},
		{"broken", &fakeNextcloud{broken: true}, false, sdk.StateUnhealthy, "status 500"},
		{"down", &fakeNextcloud{}, true, sdk.StateUnhealthy, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newFake(t, tc.fake)
			if tc.down {
				up.Close()
			}
			conn, _ := configure(t, New(slog.New(slog.DiscardHandler), "test", nil), sdk.ServiceSpec{Name: "nextcloud", Upstream: up.URL})
			h, err := conn.Health(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			st, msg := sdktest.ServiceHealth(h, "nextcloud")
			if st != tc.state || !strings.Contains(msg, tc.msg) {
				t.Errorf("health = %s %q; want %s with %q", st, msg, tc.state, tc.msg)
			}
		})
	}
}

// fakeOcc keeps Nextcloud's system config in memory and answers as occ's
// config:system:get/set do.
type fakeOcc struct {
	mu    sync.Mutex
	cfg   map[string][]string
	calls [][]string
}

func (f *fakeOcc) Run(_ context.Context, argv []string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, argv)
	args := slices.DeleteFunc(slices.Clone(argv), func(a string) bool { return strings.HasPrefix(a, "--no-") })
	i := slices.IndexFunc(args, func(a string) bool { return a == "occ" || strings.HasSuffix(a, "/occ") })
	if i < 0 {
		return "", fmt.Errorf("not occ: %v", argv)
	}
	args = args[i+1:]
	switch args[0] {
	case "config:system:get":
		vals, ok := f.cfg[args[1]]
		if !ok {
			return "", ErrExit
		}
		return strings.Join(vals, "\n") + "\n", nil
	case "config:system:set":
		val := strings.TrimPrefix(args[len(args)-1], "--value=")
		if len(args) == 4 {
			idx, _ := strconv.Atoi(args[2])
			vals := f.cfg[args[1]]
			for len(vals) <= idx {
				vals = append(vals, "")
			}
			vals[idx] = val
			f.cfg[args[1]] = vals
		} else {
			f.cfg[args[1]] = []string{val}
		}
		return "System config value " + args[1] + " set to string " + val + "\n", nil
	}
	return "", fmt.Errorf("unexpected %v", argv)
}

func TestOccAppliesSettings(t *testing.T) {
	fake := &fakeNextcloud{installed: true, trusted: []string{"localhost"}}
	up := newFake(t, fake)
	occ := &fakeOcc{cfg: map[string][]string{"trusted_domains": {"localhost", "cloud.example.org"}, "overwriteprotocol": {"http"}}}
	p := New(slog.New(slog.DiscardHandler), "test", occ)
	conn, resp := configure(t, p, sdk.ServiceSpec{Name: "nextcloud", Upstream: up.URL, Settings: map[string]string{"occ": "sudo -u www-data php /var/www/nextcloud/occ"}})
	if len(resp.Notes) != 1 || !strings.Contains(resp.Notes[0].Text, "with occ") {
		t.Errorf("notes = %+v", resp.Notes)
	}
	waitfor.NoError(t, 10*time.Second, "the config check healthy", func() error {
		h, err := conn.Health(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range h.Checks {
			if c.Name == "config" && c.State == sdk.StateHealthy {
				return nil
			}
		}
		return fmt.Errorf("checks %+v", h.Checks)
	})
	occ.mu.Lock()
	defer occ.mu.Unlock()
	want := map[string][]string{
		"trusted_domains":   {"localhost", "cloud.example.org", host},
		"trusted_proxies":   {"127.0.0.1", "::1", "10.77.1.1", "fd00:b007::1"},
		"overwritehost":     {host},
		"overwriteprotocol": {"http"},
		"overwritecondaddr": {`^(127\.0\.0\.1|::1|10\.77\.1\.1|fd00:b007::1)$`},
	}
	for k, v := range want {
		if !slices.Equal(occ.cfg[k], v) {
			t.Errorf("%s = %q, want %q", k, occ.cfg[k], v)
		}
	}
	if got := occ.calls[0]; !slices.Equal(got[:5], []string{"sudo", "-u", "www-data", "php", "/var/www/nextcloud/occ"}) {
		t.Errorf("first call = %q", got)
	}
	// overwriteprotocol was already right: not set again.
	for _, c := range occ.calls {
		if slices.Contains(c, "config:system:set") && slices.Contains(c, "overwriteprotocol") {
			t.Errorf("unneeded call %q", c)
		}
	}
	// Applying again changes nothing.
	changed, err := Occ{Cmd: []string{"occ"}, Run: &fakeOcc{cfg: occ.cfg}}.Apply(context.Background(), Required(host, sdktest.DefaultMesh()))
	if err != nil || len(changed) != 0 {
		t.Errorf("second apply: %v, %v", changed, err)
	}
}

func TestExecRunnerWithScript(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "calls")
	script := filepath.Join(dir, "occ")
	// A stand-in occ: logs its arguments; get finds nothing (exit 1).
	body := "#!/bin/sh\necho \"$@\" >> " + log + "\ncase \"$3\" in config:system:get) exit 1;; esac\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	o := Occ{Cmd: []string{"/bin/sh", script}, Run: ExecRunner{}}
	changed, err := o.Apply(context.Background(), Required(host, sdk.Mesh{}))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(changed, ",") != "trusted_domains,trusted_proxies,overwritehost,overwriteprotocol,overwritecondaddr" {
		t.Errorf("changed = %v", changed)
	}
	data, _ := os.ReadFile(log)
	if !strings.Contains(string(data), "--no-interaction --no-ansi config:system:set trusted_domains 0 --value="+host) {
		t.Errorf("calls:\n%s", data)
	}
	bad := Occ{Cmd: []string{"/nonexistent/occ"}, Run: ExecRunner{}}
	if _, err := bad.Apply(context.Background(), Required(host, sdk.Mesh{})); err == nil {
		t.Error("missing occ went unnoticed")
	}
}

func TestRefusesMissingUpstream(t *testing.T) {
	p := New(slog.New(slog.DiscardHandler), "test", nil)
	_, err := p.Configure(context.Background(), sdk.ConfigureRequest{Mesh: sdktest.DefaultMesh(), Services: []sdk.ServiceSpec{{Name: "nextcloud", Host: host}}})
	if err == nil || !strings.Contains(err.Error(), "upstream") {
		t.Errorf("err = %v", err)
	}
}
