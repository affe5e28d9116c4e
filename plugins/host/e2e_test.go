package host

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/booture/booture/catalog"
	"github.com/booture/booture/internal/waitfor"
)

// TestRealPlugins runs the first-party plugins and the example, built as
// the daemon would find them, against fake upstreams.
func TestRealPlugins(t *testing.T) {
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", dir+"/",
		"../../cmd/booture-plugin-nextcloud", "../../cmd/booture-plugin-mastodon",
		"../../cmd/booture-plugin-peertube", "../../examples/staticsite").CombinedOutput()
	if err != nil {
		t.Fatalf("building plugins: %v\n%s", err, out)
	}
	if err := os.Rename(filepath.Join(dir, "staticsite"), filepath.Join(dir, BinaryPrefix+"staticsite")); err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/status.php":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"installed":true,"maintenance":false,"needsDbUpgrade":false,"version":"29.0.4.1","versionstring":"29.0.4","edition":"","productname":"Nextcloud","extendedSupport":false}`)
		case "/health":
			fmt.Fprint(w, "OK")
		case "/api/v1/ping":
			fmt.Fprint(w, "pong")
		}
	}))
	defer up.Close()
	h := start(t, Options{
		PluginDirs: []string{dir},
		Specs: []catalog.Spec{
			{Plugin: "nextcloud", Name: "cloud", Upstream: up.URL},
			{Plugin: "mastodon", Upstream: up.URL},
			{Plugin: "peertube", Name: "videos", Upstream: up.URL, Access: catalog.AccessPublic},
			{Plugin: "staticsite", Name: "site", Settings: map[string]string{"root": sharedDir(t)}},
		},
	})
	waitfor.Cond(t, 20*time.Second, "every service healthy", func() bool {
		for _, s := range h.m.Services() {
			if s.Health != catalog.HealthHealthy {
				return false
			}
		}
		return true
	})
	byPrefix := map[string]catalog.Route{}
	for _, r := range h.m.Routes() {
		byPrefix[strings.SplitN(r.Host, ".", 2)[0]+r.PathPrefix] = r
	}
	if r := byPrefix["cloud/.well-known/caldav"]; r.Redirect != "/remote.php/dav/" || r.RedirectCode != 301 {
		t.Errorf("caldav = %+v", r)
	}
	if r := byPrefix["mastodon/api/v1/streaming"]; !r.Websocket {
		t.Errorf("streaming = %+v", r)
	}
	if r := byPrefix["videos/socket.io"]; !r.Websocket || r.Access != catalog.AccessPublic {
		t.Errorf("socket.io = %+v", r)
	}
	if r := byPrefix["site/"]; !strings.HasPrefix(r.Upstream, "http://127.0.0.1:") {
		t.Errorf("site = %+v", r)
	}
	for _, p := range h.m.List() {
		if p.State != StateRunning || len(p.Notes) == 0 && p.Name != "staticsite" {
			t.Errorf("plugin %+v", p)
		}
	}
}
