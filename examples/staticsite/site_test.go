package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/booture/booture/plugins/sdk"
	"github.com/booture/booture/plugins/sdk/sdktest"
)

func TestConformance(t *testing.T) {
	root := t.TempDir()
	sdktest.Conformance(t, New(slog.New(slog.DiscardHandler), "test"), sdktest.WithServices(sdk.ServiceSpec{
		Name: "site", Settings: map[string]string{"root": root},
	}))
}

func TestServesFolder(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "index.html"), []byte("hello mesh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := New(slog.New(slog.DiscardHandler), "test")
	conn := sdktest.Start(t, p, nil)
	ctx := context.Background()
	svc := []sdk.ServiceSpec{{Name: "site", Settings: map[string]string{"root": root}}}
	resp, err := conn.Configure(ctx, sdktest.DefaultMesh(), svc)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Routes) != 1 || resp.Routes[0].Host != "site.conformance.booture.internal" {
		t.Fatalf("routes = %+v", resp.Routes)
	}
	got := get(t, resp.Routes[0].Upstream+"/")
	if got != "hello mesh\n" {
		t.Errorf("GET / = %q", got)
	}
	// Reconfiguring with the same settings keeps the port.
	again, err := conn.Configure(ctx, sdktest.DefaultMesh(), svc)
	if err != nil {
		t.Fatal(err)
	}
	if again.Routes[0].Upstream != resp.Routes[0].Upstream {
		t.Errorf("upstream moved from %s to %s", resp.Routes[0].Upstream, again.Routes[0].Upstream)
	}
	h, err := conn.Health(ctx)
	if err != nil || h.State != sdk.StateHealthy {
		t.Errorf("health = %+v, %v", h, err)
	}
	os.RemoveAll(root)
	if h, _ := conn.Health(ctx); h.State != sdk.StateUnhealthy {
		t.Errorf("health after removing root = %+v", h)
	}
	if err := conn.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRefusesBadSettings(t *testing.T) {
	p := New(slog.New(slog.DiscardHandler), "test")
	ctx := context.Background()
	for name, settings := range map[string]map[string]string{
		"no root":        {},
		"missing root":   {"root": "/nonexistent/booture"},
		"public listen":  {"root": t.TempDir(), "listen": "0.0.0.0:8080"},
		"garbled listen": {"root": t.TempDir(), "listen": "nope"},
	} {
		req := sdk.ConfigureRequest{Mesh: sdktest.DefaultMesh(), Services: []sdk.ServiceSpec{{Name: "site", Host: "site.x.booture.internal", Settings: settings}}}
		if _, err := p.Configure(ctx, req); err == nil {
			t.Errorf("%s: configure succeeded", name)
		}
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
