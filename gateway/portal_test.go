package gateway

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/booture/booture/catalog"
)

func portalState() State {
	nasty := svc("wiki", "diois", catalog.AccessMesh, catalog.HealthDegraded)
	nasty.Message = `<script>alert("x")</script> & more`
	evil := svc("evil", "crest", catalog.AccessMesh, "bogus-health")
	evil.URL = "javascript:alert(1)"
	return state(nil,
		svc("cloud", "diois", catalog.AccessMembers, catalog.HealthHealthy),
		nasty,
		svc("blog", "diois", catalog.AccessPublic, catalog.HealthUnhealthy),
		svc("photos", "crest", catalog.AccessMesh, catalog.HealthHealthy),
		evil,
		svc("video", "ardeche", catalog.AccessPublic, ""),
	)
}

func TestPortalHTML(t *testing.T) {
	g, _ := newTestGateway(t, testConfig())
	if w := serve(g, "GET", "http://diois.booture.internal/", srcMember, nil); w.Code != 503 {
		t.Errorf("portal before the first Update: got %d, want 503", w.Code)
	}
	mustUpdate(t, g, portalState())
	for _, host := range []string{"diois.booture.internal", "DIOIS.booture.internal.:80", "10.77.1.1", "[fd00:77:77:1::1]:80", "192.168.1.10"} {
		w := serve(g, "GET", "http://"+host+"/", srcMember, nil)
		body := w.Body.String()
		if w.Code != 200 || w.Header().Get("Content-Type") != "text/html; charset=utf-8" {
			t.Fatalf("portal at %s: got %d %q", host, w.Code, w.Header().Get("Content-Type"))
		}
		for _, want := range []string{
			`<html lang="en">`,
			`<a href="http://cloud.diois.booture.internal/">cloud</a>`,
			`On crest`, `On ardeche`,
			`<a href="http://photos.crest.booture.internal/">photos</a>`,
			`&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; more`,
			`href="#ZgotmplZ"`, // javascript: URL neutralized
			`✓ working`, `! degraded`, `✗ down`, `? unknown`,
			`Open to members of diois only.`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("portal at %s lacks %q", host, want)
			}
		}
		if strings.Contains(body, "<script>") || strings.Contains(body, "bogus-health") {
			t.Errorf("portal at %s: unescaped or unmapped content", host)
		}
		// This booture first, then the others by name.
		if i, j, k := strings.Index(body, "On diois"), strings.Index(body, "On ardeche"), strings.Index(body, "On crest"); !(i < j && j < k) {
			t.Errorf("group order: diois %d, ardeche %d, crest %d", i, j, k)
		}
	}
	// The LAN sees public services only.
	body := serve(g, "GET", "http://diois.booture.internal/", srcPublic, nil).Body.String()
	if strings.Contains(body, "cloud") || strings.Contains(body, "photos") || !strings.Contains(body, "blog") || !strings.Contains(body, "video") {
		t.Errorf("public portal shows the wrong services:\n%s", body)
	}
	if w := serve(g, "POST", "http://diois.booture.internal/", srcMember, strings.NewReader("x")); w.Code != 405 {
		t.Errorf("POST to the portal: got %d", w.Code)
	}
	if w := serve(g, "GET", "http://diois.booture.internal/nope", srcMember, nil); w.Code != 404 {
		t.Errorf("unknown portal page: got %d", w.Code)
	}
	if w := serve(g, "HEAD", "http://diois.booture.internal/", srcMember, nil); w.Code != 200 || w.Body.Len() != 0 {
		t.Errorf("HEAD: got %d with %d bytes", w.Code, w.Body.Len())
	}
}

func TestPortalJSON(t *testing.T) {
	g, _ := newTestGateway(t, testConfig())
	mustUpdate(t, g, portalState())
	w := serve(g, "GET", "http://diois.booture.internal/api/services", srcMesh, nil)
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	var raw []map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) != 6 {
		t.Fatalf("got %d services, want 6", len(raw))
	}
	for _, m := range raw {
		for _, k := range []string{"name", "booture", "url", "access", "health"} {
			if _, ok := m[k]; !ok {
				t.Errorf("entry %v lacks %q", m, k)
			}
		}
	}
	var list []catalog.Service
	_ = json.Unmarshal(w.Body.Bytes(), &list)
	var got []string
	for _, s := range list {
		got = append(got, s.Name+"."+s.Booture+":"+string(s.Health))
	}
	want := []string{"blog.diois:unhealthy", "cloud.diois:healthy", "wiki.diois:degraded",
		"video.ardeche:unknown", "evil.crest:unknown", "photos.crest:healthy"}
	if !slices.Equal(got, want) {
		t.Errorf("catalog:\n got %v\nwant %v", got, want)
	}
	if list[0].URL != "http://blog.diois.booture.internal/" {
		t.Errorf("default URL: %q", list[0].URL)
	}

	pub := serve(g, "GET", "http://diois.booture.internal/api/services", srcPublic, nil).Body.String()
	if strings.Contains(pub, `"cloud"`) || !strings.Contains(pub, `"blog"`) {
		t.Errorf("public catalog: %s", pub)
	}
	mustUpdate(t, g, state(nil))
	if empty := strings.TrimSpace(serve(g, "GET", "http://diois.booture.internal/api/services", srcMember, nil).Body.String()); empty != "[]" {
		t.Errorf("empty catalog: %q, want []", empty)
	}
}
