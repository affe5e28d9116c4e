package mastodon

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/booture/booture/plugins/sdk"
	"github.com/booture/booture/plugins/sdk/sdktest"
)

// web answers as Mastodon's Puma: HealthController#show renders plain
// "OK"; state "error" is Rails' 500 page, "nginx503" a maintenance page
// from the nginx in front.
func web(t *testing.T, state string) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch state {
		case "error":
			w.Header().Set("Content-Type", "text/html; charset=UTF-8")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, "<!DOCTYPE html><html><head><title>We're sorry, but something went wrong (500)</title></head></html>")
			return
		case "nginx503":
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, "<html><head><title>503 Service Temporarily Unavailable</title></head><body><center><h1>503 Service Temporarily Unavailable</h1></center><hr><center>nginx</center></body></html>")
			return
		}
		if r.URL.Path == "/health" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "max-age=0, private, must-revalidate")
			fmt.Fprint(w, "OK")
			return
		}
		fmt.Fprint(w, "<!DOCTYPE html><html><body>Mastodon</body></html>")
	}))
	t.Cleanup(s.Close)
	return s
}

// streaming answers as Mastodon's streaming server (streaming/index.js):
// /api/v1/streaming/health is 200 text/plain "OK"; anything else without a
// token is 401 JSON.
func streaming(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/streaming/health" {
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, "OK")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":"Missing access token"}`)
	}))
	t.Cleanup(s.Close)
	return s
}

func TestConformance(t *testing.T) {
	sdktest.Conformance(t, New(slog.New(slog.DiscardHandler), "test"), sdktest.WithServices(sdk.ServiceSpec{
		Name: "social", Upstream: web(t, "ok").URL, Settings: map[string]string{"streaming": streaming(t).URL},
	}))
}

func TestRoutes(t *testing.T) {
	up, st := web(t, "ok"), streaming(t)
	for _, tc := range []struct {
		settings   map[string]string
		streamUp   string
		maxBody    int64
		wantErrMsg string
	}{
		{nil, up.URL, DefaultMaxBody, ""},
		{map[string]string{"streaming": st.URL + "/", "max_body": "40MiB"}, st.URL, 40 << 20, ""},
		{map[string]string{"max_body": "huge"}, "", 0, "setting max_body"},
		{map[string]string{"streaming": "localhost:4000"}, "", 0, "setting streaming"},
	} {
		conn := sdktest.Start(t, New(slog.New(slog.DiscardHandler), "test"), nil)
		resp, err := conn.Configure(context.Background(), sdktest.DefaultMesh(), []sdk.ServiceSpec{{Name: "mastodon", Upstream: up.URL, Settings: tc.settings}})
		if tc.wantErrMsg != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErrMsg) {
				t.Errorf("%v: err = %v", tc.settings, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]sdk.Route{}
		for _, r := range resp.Routes {
			got[r.PathPrefix] = r
		}
		if r := got["/"]; r.Upstream != up.URL || r.MaxBodyBytes != tc.maxBody || r.Websocket {
			t.Errorf("%v: / = %+v", tc.settings, r)
		}
		if r := got["/api/v1/streaming"]; r.Upstream != tc.streamUp || !r.Websocket {
			t.Errorf("%v: streaming = %+v", tc.settings, r)
		}
		if len(resp.Notes) != 1 || !strings.Contains(resp.Notes[0].Text, "LOCAL_DOMAIN") {
			t.Errorf("notes = %+v", resp.Notes)
		}
	}
}

func TestHealth(t *testing.T) {
	stDown := streaming(t)
	stDown.Close()
	for _, tc := range []struct {
		name      string
		web       string
		webDown   bool
		streaming string
		state     sdk.State
		msg       string
	}{
		{"healthy", "ok", false, streaming(t).URL, sdk.StateHealthy, ""},
		{"healthy without separate streaming", "ok", false, "", sdk.StateHealthy, ""},
		{"rails error", "error", false, "", sdk.StateUnhealthy, "status 500"},
		{"maintenance page", "nginx503", false, "", sdk.StateUnhealthy, "status 503"},
		{"web down", "ok", true, "", sdk.StateUnhealthy, "connection refused"},
		{"streaming down", "ok", false, stDown.URL, sdk.StateDegraded, "live updates are off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := web(t, tc.web)
			if tc.webDown {
				up.Close()
			}
			conn := sdktest.Start(t, New(slog.New(slog.DiscardHandler), "test"), nil)
			settings := map[string]string{}
			if tc.streaming != "" {
				settings["streaming"] = tc.streaming
			}
			if _, err := conn.Configure(context.Background(), sdktest.DefaultMesh(), []sdk.ServiceSpec{{Name: "mastodon", Upstream: up.URL, Settings: settings}}); err != nil {
				t.Fatal(err)
			}
			h, err := conn.Health(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			st, msg := sdktest.ServiceHealth(h, "mastodon")
			if st != tc.state || !strings.Contains(msg, tc.msg) {
				t.Errorf("health = %s %q; want %s with %q", st, msg, tc.state, tc.msg)
			}
		})
	}
}
