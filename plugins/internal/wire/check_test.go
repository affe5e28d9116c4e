package wire

import (
	"strings"
	"testing"
	"time"

	"github.com/booture/booture/catalog"
)

var testMesh = Mesh{Booture: "diois", Domain: "booture.internal"}

func specs() []Spec {
	return []Spec{
		{Name: "cloud", Host: "cloud.diois.booture.internal", Access: catalog.AccessMembers},
		{Name: "social", Host: "social.diois.booture.internal", Access: catalog.AccessPublic},
	}
}

func TestCheckRoutes(t *testing.T) {
	ok := func(svc, prefix string) catalog.Route {
		return catalog.Route{Service: svc, Host: svc + ".diois.booture.internal", PathPrefix: prefix, Upstream: "http://127.0.0.1:8080"}
	}
	for _, tc := range []struct {
		name    string
		mutate  func(r *catalog.Route)
		wantErr string
	}{
		{"valid", func(*catalog.Route) {}, ""},
		{"redirect", func(r *catalog.Route) { r.Upstream, r.Redirect = "", "/remote.php/dav/" }, ""},
		{"absolute redirect", func(r *catalog.Route) { r.Upstream, r.Redirect, r.RedirectCode = "", "http://x.example/", 308 }, ""},
		{"both", func(r *catalog.Route) { r.Redirect = "/x" }, "both upstream and redirect"},
		{"neither", func(r *catalog.Route) { r.Upstream = "" }, "neither upstream nor redirect"},
		{"scheme", func(r *catalog.Route) { r.Upstream = "ftp://127.0.0.1/" }, "scheme must be http or https"},
		{"no host", func(r *catalog.Route) { r.Upstream = "http:///x" }, "no host"},
		{"garbled", func(r *catalog.Route) { r.Upstream = "http://[::1" }, "upstream"},
		{"credentials", func(r *catalog.Route) { r.Upstream = "http://u:p@127.0.0.1/" }, "credentials"},
		{"query", func(r *catalog.Route) { r.Upstream = "http://127.0.0.1/?a=b" }, "only scheme"},
		{"foreign host", func(r *catalog.Route) { r.Host = "evil.example.com" }, "outside this booture's names"},
		{"portal host", func(r *catalog.Route) { r.Host = "diois.booture.internal" }, "outside this booture's names"},
		{"other service's host", func(r *catalog.Route) { r.Host = "social.diois.booture.internal" }, "may only use cloud.diois.booture.internal"},
		{"upper case host", func(r *catalog.Route) { r.Host = "CLOUD.diois.booture.internal" }, "may only use"},
		{"relative prefix", func(r *catalog.Route) { r.PathPrefix = "x" }, "does not start with '/'"},
		{"dot segment", func(r *catalog.Route) { r.PathPrefix = "/a/../b" }, "dot segment"},
		{"space", func(r *catalog.Route) { r.PathPrefix = "/a b" }, "forbidden character"},
		{"bad code", func(r *catalog.Route) { r.Upstream, r.Redirect, r.RedirectCode = "", "/x", 200 }, "redirect code 200"},
		{"scheme-relative redirect", func(r *catalog.Route) { r.Upstream, r.Redirect = "", "//evil.example/" }, "want a path or an absolute"},
		{"header injection", func(r *catalog.Route) { r.Upstream, r.Redirect = "", "/x\r\nSet-Cookie: a=b" }, "line break"},
		{"negative timeout", func(r *catalog.Route) { r.DialTimeout = -time.Second }, "dial timeout"},
		{"huge timeout", func(r *catalog.Route) { r.ResponseTimeout = 48 * time.Hour }, "response timeout"},
	} {
		r := ok("cloud", "/")
		tc.mutate(&r)
		got := CheckRoutes(testMesh, specs(), []catalog.Route{r, ok("social", "/")})
		err := got.Errors["cloud"]
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: unexpected error %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.wantErr)
		}
		if tc.wantErr != "" && len(got.Routes["cloud"]) != 0 {
			t.Errorf("%s: refused service kept routes", tc.name)
		}
		// The other service is never hurt.
		if s := got.Routes["social"]; got.Errors["social"] != nil || len(s) != 1 || s[0].Access != catalog.AccessPublic {
			t.Errorf("%s: social = %+v, %v", tc.name, s, got.Errors["social"])
		}
	}
}

func TestCheckRoutesServiceLevel(t *testing.T) {
	r := catalog.Route{Service: "cloud", Host: "cloud.diois.booture.internal", PathPrefix: "/", Upstream: "http://127.0.0.1:1"}
	redirect := catalog.Route{Service: "cloud", Host: "cloud.diois.booture.internal", PathPrefix: "/.well-known/caldav", Redirect: "/remote.php/dav/"}
	got := CheckRoutes(testMesh, specs(), []catalog.Route{redirect, r, r, {Service: "ghost", Host: "x", PathPrefix: "/"}})
	if e := got.Errors["cloud"]; e == nil || !strings.Contains(e.Error(), "duplicate route") {
		t.Errorf("duplicate: %v", e)
	}
	if e := got.Errors["social"]; e == nil || !strings.Contains(e.Error(), "no route") {
		t.Errorf("no route: %v", e)
	}
	if len(got.Stray) != 1 || !strings.Contains(got.Stray[0].Error(), `unknown service "ghost"`) {
		t.Errorf("stray = %v", got.Stray)
	}
	got = CheckRoutes(testMesh, specs()[:1], []catalog.Route{r, redirect})
	rs := got.Routes["cloud"]
	if len(rs) != 2 || rs[0].PathPrefix != "/" || rs[1].RedirectCode != 301 || rs[1].Access != catalog.AccessMembers {
		t.Errorf("routes = %+v", rs)
	}
	var many []catalog.Route
	for i := 0; i <= MaxRoutesPerService; i++ {
		x := r
		x.PathPrefix = "/p" + strings.Repeat("x", i)
		many = append(many, x)
	}
	if e := CheckRoutes(testMesh, specs()[:1], many).Errors["cloud"]; e == nil {
		t.Error("too many routes accepted")
	}
}

func TestCheckDescription(t *testing.T) {
	good := Description{Name: "nextcloud", Version: "1.0.0", ProtocolVersion: 1, Services: []ServiceInfo{{Name: "nextcloud"}}}
	if err := CheckDescription(good, "nextcloud"); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Description){
		"bad name":    func(d *Description) { d.Name = "Next_Cloud" },
		"no version":  func(d *Description) { d.Version = " " },
		"protocol":    func(d *Description) { d.ProtocolVersion = 2 },
		"no service":  func(d *Description) { d.Services = nil },
		"bad service": func(d *Description) { d.Services = []ServiceInfo{{Name: "-x"}} },
	} {
		d := good
		mutate(&d)
		if CheckDescription(d, "") == nil {
			t.Errorf("%s accepted", name)
		}
	}
	if err := CheckDescription(good, "mastodon"); err == nil || !strings.Contains(err.Error(), `booture-plugin-mastodon describes itself as "nextcloud"`) {
		t.Errorf("name mismatch: %v", err)
	}
}

func TestServiceHealth(t *testing.T) {
	r := Report{State: catalog.HealthDegraded, Message: "overall", Checks: []Check{
		{Service: "cloud", Name: "status", State: catalog.HealthHealthy},
		{Service: "social", Name: "web", State: catalog.HealthUnhealthy, Message: "down"},
		{Name: "disk", State: catalog.HealthDegraded, Message: "low"},
	}}
	if st, msg := ServiceHealth(r, "cloud"); st != catalog.HealthDegraded || msg != "disk: low" {
		t.Errorf("cloud = %s %q", st, msg)
	}
	if st, msg := ServiceHealth(r, "social"); st != catalog.HealthUnhealthy || msg != "web: down" {
		t.Errorf("social = %s %q", st, msg)
	}
	if st, _ := ServiceHealth(Report{State: catalog.HealthHealthy}, "x"); st != catalog.HealthHealthy {
		t.Errorf("no checks = %s", st)
	}
}

// FuzzCheckRoutes feeds plugin replies to the checker: it must never
// panic, and whatever it accepts must be a well-formed route of its
// service.
func FuzzCheckRoutes(f *testing.F) {
	f.Add("cloud", "cloud.diois.booture.internal", "/", "http://127.0.0.1:8080", "", 0, int64(0))
	f.Add("cloud", "cloud.diois.booture.internal", "/.well-known/caldav", "", "/remote.php/dav/", 301, int64(-1))
	f.Add("x", "evil", "a", "ftp://", "//x", 999, int64(-5))
	f.Fuzz(func(t *testing.T, svc, host, prefix, upstream, redirect string, code int, timeout int64) {
		r := catalog.Route{Service: svc, Host: host, PathPrefix: prefix, Upstream: upstream, Redirect: redirect, RedirectCode: code, DialTimeout: time.Duration(timeout)}
		got := CheckRoutes(testMesh, specs(), []catalog.Route{r})
		for name, rs := range got.Routes {
			for _, r := range rs {
				if r.Host != name+".diois.booture.internal" || !strings.HasPrefix(r.PathPrefix, "/") || (r.Upstream == "") == (r.Redirect == "") {
					t.Fatalf("accepted bad route %+v", r)
				}
			}
		}
	})
}
