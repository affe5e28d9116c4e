package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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

// TestStaysInItsFolder is the review's attack on the plugin: a site folder
// with a link to a private key outside it, a link to a folder outside it,
// hidden files (.env, .git) and a folder without index.html. None of them
// may be served; what is really in the folder is.
func TestStaysInItsFolder(t *testing.T) {
	outside := t.TempDir()
	write(t, filepath.Join(outside, "private.key"), "SECRET KEY")
	root := t.TempDir()
	write(t, filepath.Join(root, "index.html"), "home")
	write(t, filepath.Join(root, ".env"), "SECRET ENV")
	write(t, filepath.Join(root, ".git", "config"), "SECRET GIT")
	write(t, filepath.Join(root, "docs", "a.txt"), "doc a")
	write(t, filepath.Join(root, "docs", ".hidden"), "SECRET HIDDEN")
	write(t, filepath.Join(root, "blog", "index.html"), "blog home")
	for link, target := range map[string]string{
		"key.txt":  filepath.Join(outside, "private.key"),
		"out":      outside,
		"rel.txt":  "../" + filepath.Base(outside) + "/private.key",
		"home.txt": "index.html", // inside the folder: fine
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	serve := func(listing string) string {
		p := New(slog.New(slog.DiscardHandler), "test")
		t.Cleanup(func() { p.Stop(context.Background()) })
		resp, err := p.Configure(context.Background(), sdk.ConfigureRequest{Mesh: sdktest.DefaultMesh(), Services: []sdk.ServiceSpec{
			{Name: "site", Host: "site.x.booture.internal", Settings: map[string]string{"root": root, "listing": listing}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Routes[0].Upstream
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, listing := range []string{"", "true"} {
		up := serve(listing)
		for _, tc := range []struct {
			path string
			code int
			body string // expected (200) or must not appear (others)
		}{
			{"/", 200, "home"},
			{"/home.txt", 200, "home"},
			{"/docs/a.txt", 200, "doc a"},
			{"/blog/", 200, "blog home"},
			{"/blog", 301, ""},
			{"/key.txt", 404, "SECRET"},
			{"/rel.txt", 404, "SECRET"},
			{"/out/private.key", 404, "SECRET"},
			{"/out/", 404, "private.key"},
			{"/../" + filepath.Base(outside) + "/private.key", 404, "SECRET"},
			{"/.env", 404, "SECRET"},
			{"/.git/config", 404, "SECRET"},
			{"/.git/", 404, "config"},
			{"/docs/.hidden", 404, "SECRET"},
			{"/docs/%2ehidden", 404, "SECRET"},
		} {
			req, _ := http.NewRequest("GET", up+tc.path, nil)
			req.URL.RawPath = "" // send the path as written, dots and all
			req.URL.Opaque = "//" + req.URL.Host + tc.path
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code || tc.code == 200 && string(b) != tc.body || tc.code != 200 && tc.body != "" && strings.Contains(string(b), tc.body) {
				t.Errorf("listing=%q GET %s: %d %q, want %d", listing, tc.path, resp.StatusCode, b, tc.code)
			}
		}
		// A folder without index.html: listed only when asked, never its
		// hidden files.
		resp, err := http.Get(up + "/docs/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case listing == "" && resp.StatusCode != 404:
			t.Errorf("folder without index.html, no listing: %d %q", resp.StatusCode, b)
		case listing == "true" && (resp.StatusCode != 200 || !strings.Contains(string(b), "a.txt") || strings.Contains(string(b), ".hidden")):
			t.Errorf("folder listing: %d %q", resp.StatusCode, b)
		}
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
