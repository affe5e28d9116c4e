package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/booture/booture/catalog"
)

// The test mesh: this booture is diois (site 1), crest (site 2) has no
// IPv6, and ardeche exists only in gossip about one of its services.
var (
	testNet = Network{
		Site4: netip.MustParsePrefix("10.77.1.0/24"),
		Site6: netip.MustParsePrefix("fd00:77:77:1::/64"),
		Pool4: netip.MustParsePrefix("10.77.0.0/16"),
		Pool6: netip.MustParsePrefix("fd00:77:77::/48"),
	}
	selfB  = catalog.Booture{Name: "diois", IPv4: netip.MustParseAddr("10.77.1.1"), IPv6: netip.MustParseAddr("fd00:77:77:1::1")}
	crestB = catalog.Booture{Name: "crest", IPv4: netip.MustParseAddr("10.77.2.1")}
)

// Sources as RemoteAddr strings.
const (
	srcSelf   = "127.0.0.1:40000"
	srcMember = "10.77.1.5:40000"
	srcMesh   = "10.77.2.7:40000"
	srcPublic = "192.0.2.10:40000"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// tWriter sends log lines to t.Log, so they show only for failing tests.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testConfig() Config {
	c := DefaultConfig()
	c.ResolvConf = "" // never the host's resolvers in tests
	return c
}

func newTestGateway(t testing.TB, cfg Config) (*Gateway, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	var log *slog.Logger
	if _, ok := t.(*testing.T); ok { // not in benchmarks and fuzz workers
		log = testLogger(t)
	}
	g, err := New(cfg, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	return g, reg
}

// upstream starts a loopback HTTP server that echoes what it received.
func upstreamServer(t testing.TB, name string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		h := w.Header()
		h.Set("X-Upstream", name)
		h.Set("X-Got-Path", r.URL.Path)
		h.Set("X-Got-Query", r.URL.RawQuery)
		h.Set("X-Got-Host", r.Host)
		h.Set("X-Got-XFF", r.Header.Get("X-Forwarded-For"))
		h.Set("X-Got-XFH", r.Header.Get("X-Forwarded-Host"))
		h.Set("X-Got-XFP", r.Header.Get("X-Forwarded-Proto"))
		h.Set("X-Got-Body-Len", itoa(n))
		_, _ = io.WriteString(w, "hello from "+name)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// serve runs one request through the gateway's handler from src.
func serve(g *Gateway, method, target, src string, body io.Reader) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, body)
	r.RemoteAddr = src
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	return w
}

func mustUpdate(t testing.TB, g *Gateway, st State) {
	t.Helper()
	if err := g.Update(st); err != nil {
		t.Fatal(err)
	}
}

// startDNS serves g's DNS handler on a loopback UDP and TCP port and returns
// "127.0.0.1:port".
func startDNS(t testing.TB, g *Gateway) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var pc net.PacketConn
	var ln net.Listener
	var err error
	for range 20 { // the TCP port may be taken: bounded retries
		pc, err = net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp4", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*dns.Server{
		{PacketConn: pc, Handler: g.DNSHandler(ctx)},
		{Listener: ln, Handler: g.DNSHandler(ctx)},
	} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		done := make(chan struct{})
		go func() { defer close(done); _ = s.ActivateAndServe() }()
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("dns server did not start")
		}
		t.Cleanup(func() {
			_ = s.Shutdown()
			<-done
		})
	}
	return pc.LocalAddr().String()
}
