package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/booture/booture/catalog"
)

// BenchmarkProxy compares a request straight to an upstream with the same
// request through the gateway, in one run. Allocations are the process's:
// client, gateway and upstream together, so the difference between the two
// is the gateway's cost.
func BenchmarkProxy(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello, world\n")
	}))
	defer up.Close()
	g, _ := newTestGateway(b, testConfig())
	mustUpdate(b, g, state([]catalog.Route{{Service: "cloud", Host: cloudHost, Upstream: up.URL, Access: catalog.AccessPublic}}))
	front := httptest.NewServer(g)
	defer front.Close()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	get := func(b *testing.B, url string) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = cloudHost
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	for _, tc := range []struct{ name, url string }{{"direct", up.URL + "/x"}, {"gateway", front.URL + "/x"}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				get(b, tc.url)
			}
		})
		b.Run(tc.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					get(b, tc.url)
				}
			})
		})
	}
}

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkHandler calls the gateway's handler without an HTTP server in
// front: the gateway, its transport and the upstream's allocations only.
func BenchmarkHandler(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello, world\n")
	}))
	defer up.Close()
	g, _ := newTestGateway(b, testConfig())
	mustUpdate(b, g, state([]catalog.Route{{Service: "cloud", Host: cloudHost, Upstream: up.URL}}))
	for _, tc := range []struct{ name, host, src string }{
		{"proxied", cloudHost, srcMember},
		{"denied", cloudHost, srcPublic},
		{"portal", "diois.booture.internal", srcMember},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := httptest.NewRequest("GET", "http://"+tc.host+"/", nil)
			r.RemoteAddr = tc.src
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				g.ServeHTTP(w, r)
			}
		})
	}
}

func BenchmarkLookup(b *testing.B) {
	g, _ := newTestGateway(b, testConfig())
	mustUpdate(b, g, dnsState())
	s := g.snap.Load()
	src := netip.MustParseAddr("10.77.2.7")
	b.ReportAllocs()
	for b.Loop() {
		h, _ := hostName("Cloud.Diois.Booture.Internal:80")
		if s.lookupHost(h).kind != hostLocal || s.net.Classify(src) != AudienceMesh {
			b.Fatal("wrong lookup")
		}
	}
}

func BenchmarkDNSLocal(b *testing.B) {
	g, _ := newTestGateway(b, testConfig())
	mustUpdate(b, g, dnsState())
	m := new(dns.Msg)
	m.SetQuestion("cloud.diois.booture.internal.", dns.TypeA)
	src := netip.MustParseAddr("10.77.1.5")
	b.ReportAllocs()
	for b.Loop() {
		if r, _ := g.answerDNS(context.Background(), m, src, false); len(r.Answer) != 1 {
			b.Fatal("no answer")
		}
	}
}
