package peertube

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/booture/booture/plugins/sdk"
	"github.com/booture/booture/plugins/sdk/sdktest"
)

// fake answers as PeerTube (server/core/controllers/api/index.ts): the
// ping handler does res.send('pong'), which Express sends as 200
// text/html with an ETag; unknown API paths are 400. "starting" is the
// nginx in front while PeerTube is not listening yet (502).
func fake(t *testing.T, state string) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if state == "starting" {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>")
			return
		}
		switch {
		case r.URL.Path == "/api/v1/ping":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("ETag", `W/"4-DlFKBmK8tp3IY5U9HOJuPUDoGoc"`)
			w.Header().Set("X-Powered-By", "PeerTube")
			fmt.Fprint(w, "pong")
		case strings.HasPrefix(r.URL.Path, "/api/"):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
		default:
			fmt.Fprint(w, "<!doctype html><html><body>PeerTube</body></html>")
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func TestConformance(t *testing.T) {
	sdktest.Conformance(t, New(slog.New(slog.DiscardHandler), "test"), sdktest.WithServices(sdk.ServiceSpec{
		Name: "videos", Upstream: fake(t, "ok").URL,
	}))
}

func TestRoutes(t *testing.T) {
	up := fake(t, "ok")
	conn := sdktest.Start(t, New(slog.New(slog.DiscardHandler), "test"), nil)
	resp, err := conn.Configure(context.Background(), sdktest.DefaultMesh(), []sdk.ServiceSpec{{Name: "peertube", Upstream: up.URL}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]sdk.Route{}
	for _, r := range resp.Routes {
		got[r.PathPrefix] = r
		if r.MaxBodyBytes >= 0 {
			t.Errorf("%s has a body limit: %d", r.PathPrefix, r.MaxBodyBytes)
		}
	}
	for _, ws := range []string{"/socket.io", "/tracker/socket"} {
		if !got[ws].Websocket || got[ws].Upstream != up.URL {
			t.Errorf("%s = %+v", ws, got[ws])
		}
	}
	if r := got["/api/v1/videos/upload-resumable"]; r.ResponseTimeout < time.Hour {
		t.Errorf("upload route = %+v", r)
	}
	if got["/"].Websocket {
		t.Error("websockets allowed everywhere")
	}
	if _, err := conn.Configure(context.Background(), sdktest.DefaultMesh(), []sdk.ServiceSpec{{Name: "peertube", Upstream: up.URL, Settings: map[string]string{"max_body": "8GiB", "upload_timeout": "2h"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Configure(context.Background(), sdktest.DefaultMesh(), []sdk.ServiceSpec{{Name: "peertube", Upstream: up.URL, Settings: map[string]string{"upload_timeout": "forever"}}}); err == nil {
		t.Error("bad upload_timeout accepted")
	}
}

func TestHealth(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state string
		down  bool
		want  sdk.State
		msg   string
	}{
		{"healthy", "ok", false, sdk.StateHealthy, ""},
		{"starting behind nginx", "starting", false, sdk.StateUnhealthy, "status 502"},
		{"down", "ok", true, sdk.StateUnhealthy, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := fake(t, tc.state)
			if tc.down {
				up.Close()
			}
			conn := sdktest.Start(t, New(slog.New(slog.DiscardHandler), "test"), nil)
			if _, err := conn.Configure(context.Background(), sdktest.DefaultMesh(), []sdk.ServiceSpec{{Name: "peertube", Upstream: up.URL}}); err != nil {
				t.Fatal(err)
			}
			h, err := conn.Health(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			st, msg := sdktest.ServiceHealth(h, "peertube")
			if st != tc.want || !strings.Contains(msg, tc.msg) {
				t.Errorf("health = %s %q; want %s with %q", st, msg, tc.want, tc.msg)
			}
		})
	}
	// A server answering something else than PeerTube's pong.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello") }))
	defer other.Close()
	p := New(slog.New(slog.DiscardHandler), "test")
	p.Configure(context.Background(), sdk.ConfigureRequest{Services: []sdk.ServiceSpec{{Name: "peertube", Upstream: other.URL}}})
	if h, _ := p.Health(context.Background()); h.State != sdk.StateUnhealthy || !strings.Contains(h.Message, `want "pong"`) {
		t.Errorf("health of a non-PeerTube = %+v", h)
	}
}
