package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/net/websocket"

	"github.com/booture/booture/catalog"
	"github.com/booture/booture/internal/waitfor"
)

const cloudHost = "cloud.diois.booture.internal"

func state(routes []catalog.Route, services ...catalog.Service) State {
	return State{
		Self:     selfB,
		Network:  testNet,
		Routes:   routes,
		Services: services,
		Bootures: []catalog.Booture{selfB, crestB},
	}
}

func svc(name, booture string, access catalog.Access, health catalog.Health) catalog.Service {
	return catalog.Service{Name: name, Booture: booture, Access: access, Health: health}
}

func TestRoutingByHostAndLongestPrefix(t *testing.T) {
	g, _ := newTestGateway(t, testConfig())
	a, b, c, d := upstreamServer(t, "a"), upstreamServer(t, "b"), upstreamServer(t, "c"), upstreamServer(t, "d")
	mustUpdate(t, g, state([]catalog.Route{
		{Service: "cloud", Host: cloudHost, PathPrefix: "/", Upstream: a.URL},
		{Service: "cloud", Host: cloudHost, PathPrefix: "/api", Upstream: b.URL},
		{Service: "cloud", Host: cloudHost, PathPrefix: "/api/v2/", Upstream: c.URL},
		{Service: "video", Host: "Video.Diois.Booture.Internal", PathPrefix: "/", Upstream: d.URL + "/base"},
	}))
	for _, tc := range []struct {
		host, path, want, wantPath string
	}{
		{cloudHost, "/", "a", "/"},
		{cloudHost, "/x/y?q=1", "a", "/x/y"},
		{cloudHost, "/api", "b", "/api"},
		{cloudHost, "/api/x", "b", "/api/x"},
		{cloudHost, "/apix", "a", "/apix"},
		{cloudHost, "/api/v2", "b", "/api/v2"},
		{cloudHost, "/api/v2/z", "c", "/api/v2/z"},
		{"CLOUD.Diois.Booture.INTERNAL:80", "/api", "b", "/api"},
		{cloudHost + ".", "/", "a", "/"},
		{"video.diois.booture.internal", "/watch", "d", "/base/watch"},
	} {
		t.Run(tc.host+tc.path, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://"+tc.host+tc.path, nil)
			r.RemoteAddr = srcMember
			w := httptest.NewRecorder()
			g.ServeHTTP(w, r)
			if w.Code != 200 || w.Header().Get("X-Upstream") != tc.want || w.Header().Get("X-Got-Path") != tc.wantPath {
				t.Fatalf("got %d from %q path %q, want 200 from %q path %q; body %s", w.Code,
					w.Header().Get("X-Upstream"), w.Header().Get("X-Got-Path"), tc.want, tc.wantPath, w.Body)
			}
			// The Host reaches the upstream as the member typed it.
			if w.Header().Get("X-Got-Host") != tc.host {
				t.Errorf("upstream got Host %q, want %q", w.Header().Get("X-Got-Host"), tc.host)
			}
		})
	}
	if w := serve(g, "GET", "http://cloud.diois.booture.internal/x?a=1&b=2", srcMember, nil); w.Header().Get("X-Got-Query") != "a=1&b=2" {
		t.Errorf("query: got %q", w.Header().Get("X-Got-Query"))
	}
}

func TestPrefixMatch(t *testing.T) {
	for _, tc := range []struct {
		prefix, path string
		want         bool
	}{
		{"/", "/", true}, {"/", "/a", true}, {"/a", "/a", true}, {"/a", "/a/", true}, {"/a", "/ab", false},
		{"/a/", "/a/b", true}, {"/a/", "/a", false}, {"/a/b", "/a", false},
	} {
		if got := prefixMatch(tc.prefix, tc.path); got != tc.want {
			t.Errorf("prefixMatch(%q, %q) = %v", tc.prefix, tc.path, got)
		}
	}
}

func TestAccessBySource(t *testing.T) {
	g, _ := newTestGateway(t, testConfig())
	up := upstreamServer(t, "up")
	var routes []catalog.Route
	for _, a := range []catalog.Access{catalog.AccessMembers, catalog.AccessMesh, catalog.AccessPublic, ""} {
		name := "s-" + string(a)
		if a == "" {
			name = "s-default"
		}
		routes = append(routes, catalog.Route{Service: name, Host: name + ".diois.booture.internal", Upstream: up.URL, Access: a})
	}
	// A route may be laxer than the rest of its service.
	routes = append(routes,
		catalog.Route{Service: "mixed", Host: "mixed.diois.booture.internal", PathPrefix: "/", Upstream: up.URL, Access: catalog.AccessMembers},
		catalog.Route{Service: "mixed", Host: "mixed.diois.booture.internal", PathPrefix: "/public", Upstream: up.URL, Access: catalog.AccessPublic})
	mustUpdate(t, g, state(routes))
	want := map[string]map[string]int{
		"s-members": {srcSelf: 200, srcMember: 200, srcMesh: 403, srcPublic: 403},
		"s-default": {srcSelf: 200, srcMember: 200, srcMesh: 403, srcPublic: 403},
		"s-mesh":    {srcSelf: 200, srcMember: 200, srcMesh: 200, srcPublic: 403},
		"s-public":  {srcSelf: 200, srcMember: 200, srcMesh: 200, srcPublic: 200},
	}
	srcs := map[string]string{srcSelf: "self", srcMember: "member", srcMesh: "mesh", srcPublic: "public",
		"10.77.1.1:5": "self", "[fd00:77:77:1::9]:5": "member", "[fd00:77:77:2::1]:5": "mesh", "[::ffff:10.77.1.5]:5": "member"}
	for service, bySrc := range want {
		for src, code := range bySrc {
			w := serve(g, "GET", "http://"+service+".diois.booture.internal/", src, nil)
			if w.Code != code {
				t.Errorf("%s from %s (%s): got %d, want %d", service, src, srcs[src], w.Code, code)
			}
			if code == 403 {
				body := w.Body.String()
				if !strings.Contains(body, "Access level of this service") || !strings.Contains(body, "WireGuard") {
					t.Errorf("403 page does not explain the access level:\n%s", body)
				}
			}
		}
	}
	for src, aud := range srcs {
		if got := testNet.ClassifyRemote(src).String(); got != aud {
			t.Errorf("ClassifyRemote(%s) = %s, want %s", src, got, aud)
		}
	}
	if w := serve(g, "GET", "http://mixed.diois.booture.internal/public/x", srcPublic, nil); w.Code != 200 {
		t.Errorf("public route of a members service: got %d", w.Code)
	}
	if w := serve(g, "GET", "http://mixed.diois.booture.internal/private", srcPublic, nil); w.Code != 403 {
		t.Errorf("members route: got %d", w.Code)
	}
	// Dot segments must not escape a laxer prefix.
	r := httptest.NewRequest("GET", "http://mixed.diois.booture.internal/", nil)
	r.URL.Path = "/public/../private"
	r.RemoteAddr = srcMember
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	if w.Code != 400 {
		t.Errorf("dot segments: got %d, want 400", w.Code)
	}
}

func TestForwardedHeaders(t *testing.T) {
	g, _ := newTestGateway(t, testConfig())
	up := upstreamServer(t, "up")
	mustUpdate(t, g, state([]catalog.Route{{Service: "cloud", Host: cloudHost, Upstream: up.URL, Access: catalog.AccessPublic}}))
	for _, tc := range []struct {
		src, xff, wantXFF, wantXFP string
	}{
		{srcMember, "", "10.77.1.5", "http"},
		{srcMember, "203.0.113.9", "10.77.1.5", "http"}, // members cannot spoof
		{srcPublic, "203.0.113.9, 10.0.0.1", "192.0.2.10", "http"},
		{srcSelf, "203.0.113.9", "203.0.113.9, 127.0.0.1", "https"}, // a local TLS front is trusted
	} {
		r := httptest.NewRequest("GET", "http://"+cloudHost+":80/", nil)
		r.RemoteAddr = tc.src
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
			r.Header.Set("X-Forwarded-Proto", "https")
			r.Header.Set("X-Forwarded-Host", "evil.example")
		}
		r.Header.Set("Forwarded", "for=203.0.113.9")
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		h := w.Header()
		if h.Get("X-Got-XFF") != tc.wantXFF {
			t.Errorf("from %s with XFF %q: upstream got %q, want %q", tc.src, tc.xff, h.Get("X-Got-XFF"), tc.wantXFF)
		}
		if tc.xff == "" || tc.src != srcSelf {
			if h.Get("X-Got-XFH") != cloudHost+":80" || h.Get("X-Got-XFP") != "http" {
				t.Errorf("from %s: X-Forwarded-Host %q, -Proto %q", tc.src, h.Get("X-Got-XFH"), h.Get("X-Got-XFP"))
			}
		} else if h.Get("X-Got-XFP") != tc.wantXFP {
			t.Errorf("trusted X-Forwarded-Proto: got %q", h.Get("X-Got-XFP"))
		}
		if h.Get("X-Got-Host") != cloudHost+":80" {
			t.Errorf("Host: got %q", h.Get("X-Got-Host"))
		}
	}
}

// TestSpoofedClientAddressHeaders sends every header an upstream may read
// the client's address from, under several spellings (PHP and CGI read
// X_Real_IP as X-Real-IP), from each kind of client the booture does not
// trust: none may reach the upstream, and X-Real-IP is the client's address.
func TestSpoofedClientAddressHeaders(t *testing.T) {
	g, _ := newTestGateway(t, testConfig())
	got := make(chan http.Header, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
	}))
	t.Cleanup(up.Close)
	mustUpdate(t, g, state([]catalog.Route{{Service: "cloud", Host: cloudHost, Upstream: up.URL, Access: catalog.AccessPublic}}))
	const forged = "203.0.113.9"
	spoofed := []string{
		"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded",
		"X-Real-IP", "Client-IP", "True-Client-IP",
		"X_Real_IP", "x_forwarded_for", "Client_IP", "True_Client_Ip",
	}
	for _, src := range []string{srcMember, srcMesh, srcPublic} {
		r := httptest.NewRequest("GET", "http://"+cloudHost+"/", nil)
		r.RemoteAddr = src
		for _, k := range spoofed {
			r.Header[k] = []string{forged} // as sent: net/http keeps odd names uncanonicalized
		}
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		if w.Code != 200 {
			t.Fatalf("from %s: status %d", src, w.Code)
		}
		h := <-got
		for k, vs := range h {
			for _, v := range vs {
				if strings.Contains(v, forged) {
					t.Errorf("from %s: upstream got %s: %s", src, k, v)
				}
			}
		}
		client, _, _ := strings.Cut(src, ":")
		if h.Get("X-Real-IP") != client || len(h.Values("X-Real-IP")) != 1 {
			t.Errorf("from %s: X-Real-IP %q, want %q", src, h.Values("X-Real-IP"), client)
		}
	}
	// A front on the booture itself (a local TLS proxy) is trusted to tell
	// the real client, as with X-Forwarded-For.
	r := httptest.NewRequest("GET", "http://"+cloudHost+"/", nil)
	r.RemoteAddr = srcSelf
	r.Header.Set("X-Real-IP", forged)
	g.ServeHTTP(httptest.NewRecorder(), r)
	if h := <-got; h.Get("X-Real-IP") != forged {
		t.Errorf("from the booture itself: X-Real-IP %q, want %q", h.Get("X-Real-IP"), forged)
	}
}

func TestBodyLimits(t *testing.T) {
	cfg := testConfig()
	cfg.MaxBodyBytes = 100
	g, _ := newTestGateway(t, cfg)
	up := upstreamServer(t, "up")
	mustUpdate(t, g, state([]catalog.Route{
		{Service: "small", Host: "small.diois.booture.internal", Upstream: up.URL, MaxBodyBytes: 10},
		{Service: "default", Host: "default.diois.booture.internal", Upstream: up.URL},
		{Service: "huge", Host: "huge.diois.booture.internal", Upstream: up.URL, MaxBodyBytes: -1},
	}))
	post := func(host string, n int, chunked bool) *httptest.ResponseRecorder {
		var body io.Reader = strings.NewReader(strings.Repeat("x", n))
		if chunked {
			body = io.MultiReader(body) // hides the length
		}
		r := httptest.NewRequest("POST", "http://"+host+"/upload", body)
		if chunked {
			r.ContentLength = -1
		}
		r.RemoteAddr = srcMember
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		return w
	}
	for _, tc := range []struct {
		host    string
		n       int
		chunked bool
		want    int
	}{
		{"small.diois.booture.internal", 10, false, 200},
		{"small.diois.booture.internal", 11, false, 413},
		{"small.diois.booture.internal", 10, true, 200},
		{"small.diois.booture.internal", 11, true, 413},
		{"small.diois.booture.internal", 100000, true, 413},
		{"default.diois.booture.internal", 100, false, 200},
		{"default.diois.booture.internal", 101, false, 413},
		{"default.diois.booture.internal", 101, true, 413},
		{"huge.diois.booture.internal", 3 << 20, false, 200},
		{"huge.diois.booture.internal", 3 << 20, true, 200},
	} {
		w := post(tc.host, tc.n, tc.chunked)
		if w.Code != tc.want {
			t.Errorf("%s %d bytes (chunked %v): got %d, want %d", tc.host, tc.n, tc.chunked, w.Code, tc.want)
			continue
		}
		if tc.want == 200 && w.Header().Get("X-Got-Body-Len") != itoa(int64(tc.n)) {
			t.Errorf("%s: upstream got %s bytes, want %d", tc.host, w.Header().Get("X-Got-Body-Len"), tc.n)
		}
		if tc.want == 413 && !strings.Contains(w.Body.String(), "larger than service") {
			t.Errorf("413 page: %s", w.Body)
		}
	}
}

func TestUpstreamFailures(t *testing.T) {
	g, _ := newTestGateway(t, testConfig())
	// A port that refuses connections: listen, note, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, _ := http.NewResponseController(w).Hijack()
		_, _ = c.Write([]byte("garbage\r\n\r\n"))
		c.Close()
	}))
	t.Cleanup(broken.Close)
	up := upstreamServer(t, "up")
	mustUpdate(t, g, state([]catalog.Route{
		{Service: "dead", Host: "dead.diois.booture.internal", Upstream: dead},
		{Service: "slow", Host: "slow.diois.booture.internal", Upstream: slow.URL, ResponseTimeout: 50 * time.Millisecond},
		{Service: "broken", Host: "broken.diois.booture.internal", Upstream: broken.URL},
		{Service: "sick", Host: "sick.diois.booture.internal", Upstream: up.URL},
	},
		svc("sick", "diois", catalog.AccessMembers, catalog.HealthUnhealthy),
		svc("stopped", "diois", catalog.AccessMembers, catalog.HealthUnknown),
		svc("secret", "diois", catalog.AccessMembers, catalog.HealthUnknown),
		svc("photos", "crest", catalog.AccessMesh, catalog.HealthHealthy),
		svc("intranet", "crest", catalog.AccessMembers, catalog.HealthHealthy),
	))
	for _, tc := range []struct {
		host, src string
		want      int
		says      string
	}{
		{"dead.diois.booture.internal", srcMember, 502, "Service dead on booture diois is not answering"},
		{"slow.diois.booture.internal", srcMember, 504, "took too long"},
		{"broken.diois.booture.internal", srcMember, 502, "not answering properly"},
		{"sick.diois.booture.internal", srcMember, 503, "not available right now (unhealthy)"},
		{"stopped.diois.booture.internal", srcMember, 503, "not available right now (not started)"},
		{"secret.diois.booture.internal", srcPublic, 403, "members of booture diois only"},
		{"nope.diois.booture.internal", srcMember, 404, "http://diois.booture.internal/"},
		{"photos.crest.booture.internal", srcMember, 404, "lives on booture crest"},
		{"crest.booture.internal", srcMember, 404, "The portal of booture crest is on crest"},
		{"www.example.org", srcMember, 404, "portal of diois"},
		{"photos.crest.booture.internal", srcPublic, 404, "No service of this booture answers"},
		{"bad host!", srcMember, 400, "not a valid host name"},
	} {
		r := httptest.NewRequest("GET", "http://x/", nil)
		r.Host = tc.host
		r.RemoteAddr = tc.src
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		body := w.Body.String()
		if w.Code != tc.want || !strings.Contains(body, tc.says) {
			t.Errorf("%s from %s: got %d, want %d saying %q:\n%s", tc.host, tc.src, w.Code, tc.want, tc.says, body)
		}
		if ct := w.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("%s: content type %q", tc.host, ct)
		}
		if tc.want == 503 && w.Header().Get("Retry-After") == "" {
			t.Errorf("%s: 503 without Retry-After", tc.host)
		}
	}
}

func TestRedirectAndUpgradeRefused(t *testing.T) {
	g, _ := newTestGateway(t, testConfig())
	up := upstreamServer(t, "up")
	mustUpdate(t, g, state([]catalog.Route{
		{Service: "cloud", Host: cloudHost, Upstream: up.URL},
		{Service: "cloud", Host: cloudHost, PathPrefix: "/.well-known/caldav", Redirect: "/remote.php/dav/", RedirectCode: 301},
		{Service: "cloud", Host: cloudHost, PathPrefix: "/go", Redirect: "http://elsewhere.diois.booture.internal/"},
	}))
	w := serve(g, "GET", "http://"+cloudHost+"/.well-known/caldav", srcMember, nil)
	if w.Code != 301 || w.Header().Get("Location") != "/remote.php/dav/" || w.Header().Get("X-Upstream") != "" {
		t.Errorf("redirect: got %d to %q (upstream %q)", w.Code, w.Header().Get("Location"), w.Header().Get("X-Upstream"))
	}
	if w := serve(g, "GET", "http://"+cloudHost+"/go", srcMember, nil); w.Code != 302 || w.Header().Get("Location") != "http://elsewhere.diois.booture.internal/" {
		t.Errorf("default redirect: got %d to %q", w.Code, w.Header().Get("Location"))
	}
	if w := serve(g, "GET", "http://"+cloudHost+"/.well-known/caldav", srcPublic, nil); w.Code != 403 {
		t.Errorf("redirect ignores access: got %d", w.Code)
	}
	r := httptest.NewRequest("GET", "http://"+cloudHost+"/ws", nil)
	r.RemoteAddr = srcMember
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	w = httptest.NewRecorder()
	g.ServeHTTP(w, r)
	if w.Code != 400 || !strings.Contains(w.Body.String(), "does not accept websocket connections") {
		t.Errorf("upgrade on a route without websockets: got %d %s", w.Code, w.Body)
	}
}

// TestWebsocketThroughRealListener runs a real websocket echo behind the
// gateway served on real loopback sockets, and checks access by the real
// source address (the sites are on loopback for the test).
func TestWebsocketThroughRealListener(t *testing.T) {
	g, _ := newTestGateway(t, testConfig())
	echo := httptest.NewServer(websocket.Handler(func(c *websocket.Conn) { _, _ = io.Copy(c, c) }))
	t.Cleanup(echo.Close)
	up := upstreamServer(t, "up")
	st := state([]catalog.Route{
		{Service: "chat", Host: "chat.diois.booture.internal", Upstream: echo.URL, Websocket: true, Access: catalog.AccessMesh},
		{Service: "chat", Host: "chat.diois.booture.internal", PathPrefix: "/private", Upstream: up.URL, Access: catalog.AccessMembers},
		{Service: "plain", Host: "plain.diois.booture.internal", Upstream: echo.URL},
	})
	st.Network = Network{Site4: netip.MustParsePrefix("127.0.0.0/24"), Pool4: netip.MustParsePrefix("127.0.0.0/16")}
	mustUpdate(t, g, st)

	ctx, cancel := context.WithCancel(context.Background())
	addr := serveHTTPOnLoopback(t, ctx, g)
	done := make(chan error, 1)
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Serve did not return")
		}
	})
	go func() { done <- <-addr.done }()

	// A member (127.0.0.5) talks through a websocket.
	cfg, err := websocket.NewConfig("ws://chat.diois.booture.internal/echo", "http://chat.diois.booture.internal/")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dialer = &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.5")}, Timeout: 10 * time.Second}
	conn, err := dialWS(cfg, addr.addr)
	if err != nil {
		t.Fatalf("websocket through the gateway: %v", err)
	}
	defer conn.Close()
	for i := range 3 {
		msg := fmt.Sprintf("hello %d", i)
		if err := websocket.Message.Send(conn, msg); err != nil {
			t.Fatal(err)
		}
		var got string
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if err := websocket.Message.Receive(conn, &got); err != nil || got != msg {
			t.Fatalf("echo: got %q, %v", got, err)
		}
	}

	// By real source address: a member of another booture (127.0.1.9 is
	// in the pool, not the site) may use the mesh route, not the members one.
	client := func(src string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr.addr) },
		}}
	}
	for _, tc := range []struct {
		src, path string
		want      int
	}{
		{"127.0.0.5", "/private", 200},
		{"127.0.1.9", "/private", 403},
		{"127.0.1.9", "/", 400}, // a websocket route without websocket: the echo refuses it
	} {
		resp, err := client(tc.src).Get("http://chat.diois.booture.internal" + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("from %s %s: got %d, want %d", tc.src, tc.path, resp.StatusCode, tc.want)
		}
	}

	// Upgrades on a route without Websocket are refused by the gateway.
	cfg2, _ := websocket.NewConfig("ws://plain.diois.booture.internal/echo", "http://plain.diois.booture.internal/")
	cfg2.Dialer = cfg.Dialer
	if c, err := dialWS(cfg2, addr.addr); err == nil {
		c.Close()
		t.Error("websocket accepted on a route without Websocket")
	}
}

// dialWS dials cfg's location through the gateway's address.
func dialWS(cfg *websocket.Config, gw string) (*websocket.Conn, error) {
	c, err := cfg.Dialer.Dial("tcp", gw)
	if err != nil {
		return nil, err
	}
	ws, err := websocket.NewClient(cfg, c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return ws, nil
}

type served struct {
	addr string
	done chan error
}

// serveHTTPOnLoopback runs Serve with HTTP on a free loopback port.
func serveHTTPOnLoopback(t *testing.T, ctx context.Context, g *Gateway) served {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close() // Serve binds it again; a race with another test is unlikely and fails loudly
	s := served{addr: ap.String(), done: make(chan error, 1)}
	go func() { s.done <- g.Serve(ctx, Listen{HTTP: []netip.AddrPort{ap}}) }()
	waitfor.NoError(t, 10*time.Second, "the gateway to listen on "+s.addr, func() error {
		select {
		case err := <-s.done:
			t.Fatalf("Serve: %v", err)
		default:
		}
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	return s
}

func TestServeShutdownCutsWebsockets(t *testing.T) {
	g, _ := newTestGateway(t, testConfig())
	echo := httptest.NewServer(websocket.Handler(func(c *websocket.Conn) { _, _ = io.Copy(c, c) }))
	t.Cleanup(echo.Close)
	mustUpdate(t, g, state([]catalog.Route{{Service: "chat", Host: "chat.diois.booture.internal", Upstream: echo.URL, Websocket: true}}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := serveHTTPOnLoopback(t, ctx, g)
	cfg, _ := websocket.NewConfig("ws://chat.diois.booture.internal/", "http://chat.diois.booture.internal/")
	cfg.Dialer = &net.Dialer{Timeout: 10 * time.Second}
	conn, err := dialWS(cfg, s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cancel()
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return with a websocket open")
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var got string
	if err := websocket.Message.Receive(conn, &got); err == nil {
		t.Error("websocket still open after Serve returned")
	}
}

func TestServeFreeBind(t *testing.T) {
	// 192.0.2.0/24 is TEST-NET-1: never assigned here, nothing is sent.
	a := netip.MustParseAddrPort("192.0.2.77:38080")
	cfg := testConfig()
	cfg.FreeBind = false
	g, _ := newTestGateway(t, cfg)
	if err := g.Serve(context.Background(), Listen{HTTP: []netip.AddrPort{a}}); err == nil {
		t.Fatal("bound an unassigned address without FreeBind")
	}
	cfg.FreeBind = true
	g, _ = newTestGateway(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- g.Serve(ctx, Listen{HTTP: []netip.AddrPort{a}, DNS: []netip.AddrPort{netip.AddrPortFrom(a.Addr(), 38053)}})
	}()
	select {
	case err := <-done:
		cancel()
		t.Skipf("IP_FREEBIND unavailable here: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return")
	}
}

func TestMetrics(t *testing.T) {
	g, reg := newTestGateway(t, testConfig())
	up := upstreamServer(t, "up")
	mustUpdate(t, g, state([]catalog.Route{{Service: "cloud", Host: cloudHost, Upstream: up.URL}}))
	for range 3 {
		serve(g, "GET", "http://"+cloudHost+"/", srcMember, nil)
	}
	serve(g, "GET", "http://"+cloudHost+"/", srcPublic, nil)
	serve(g, "GET", "http://nowhere.example/", srcMember, nil)
	serve(g, "GET", "http://diois.booture.internal/", srcMember, nil)
	got := counters(t, reg, "booture_gateway_http_requests_total")
	for k, v := range map[string]float64{"200/cloud": 3, "403/cloud": 1, "404/_unknown": 1, "200/_portal": 1} {
		if got[k] != v {
			t.Errorf("requests %s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	// The same registry again: collectors are reused, not an error.
	if _, err := New(testConfig(), nil, reg); err != nil {
		t.Fatal(err)
	}
}

// counters returns a counter vector as "value1/value2" -> count, label
// values in the order of the label names.
func counters(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[labels(m)] = m.GetCounter().GetValue()
		}
	}
	return out
}

func labels(m *dto.Metric) string {
	var parts []string
	for _, l := range m.GetLabel() {
		parts = append(parts, l.GetValue())
	}
	return strings.Join(parts, "/")
}

func TestUpdateValidation(t *testing.T) {
	g, _ := newTestGateway(t, testConfig())
	if err := g.Update(State{Self: catalog.Booture{Name: "Bad Name"}}); err == nil {
		t.Error("accepted an invalid self name")
	}
	bad := testNet
	bad.Site4 = netip.MustParsePrefix("10.78.1.0/24")
	if err := g.Update(State{Self: selfB, Network: bad}); err == nil {
		t.Error("accepted a site outside the pool")
	}
	up := upstreamServer(t, "up")
	// Bad routes are skipped, the good one stays.
	mustUpdate(t, g, state([]catalog.Route{
		{Service: "cloud", Host: cloudHost, Upstream: up.URL},
		{Service: "evil", Host: "evil.crest.booture.internal", Upstream: up.URL},      // another booture's name
		{Service: "x", Host: "x.diois.booture.internal", Upstream: "ftp://127.0.0.1"}, // scheme
		{Service: "y", Host: "y.diois.booture.internal", Upstream: up.URL, PathPrefix: "/a/../b"},
		{Service: "z", Host: "z.diois.booture.internal", Redirect: "/", RedirectCode: 200},
		{Service: "other", Host: cloudHost, Upstream: up.URL, PathPrefix: "/steal"}, // host of another service
		{Service: "w", Host: "w.diois.booture.internal", Upstream: up.URL, Access: "everyone"},
	}))
	s := g.snap.Load()
	if len(s.hosts) != 1 || len(s.hosts[cloudHost].routes) != 1 {
		t.Errorf("hosts after invalid routes: %v", s.hosts)
	}
}

func TestRecorderFlushAndHijack(t *testing.T) {
	// Server-sent events must stream: the first event arrives before the
	// upstream ends the response.
	g, _ := newTestGateway(t, testConfig())
	release := make(chan struct{})
	sse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: one\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(sse.Close)
	t.Cleanup(func() { close(release) })
	mustUpdate(t, g, state([]catalog.Route{{Service: "feed", Host: "feed.diois.booture.internal", Upstream: sse.URL}}))
	front := httptest.NewServer(g)
	t.Cleanup(front.Close)
	req, _ := http.NewRequest("GET", front.URL+"/", nil)
	req.Host = "feed.diois.booture.internal"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first event: %q, %v", line, err)
	}
}
