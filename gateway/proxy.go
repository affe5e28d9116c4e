package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/booture/booture/catalog"
	"github.com/booture/booture/internal/names"
)

// Metric labels for requests that match no service; names of services are
// DNS labels and never contain '_'.
const (
	labelPortal    = "_portal"
	labelUnknown   = "_unknown"
	labelElsewhere = "_elsewhere"
)

// statusClientClosed is recorded (never sent) when the client went away
// before the upstream answered, as nginx does.
const statusClientClosed = 499

// route is a validated catalog.Route with its reverse proxy.
type route struct {
	catalog.Route
	maxBody int64 // resolved: negative means unlimited
	proxy   *httputil.ReverseProxy
}

// newRoute validates r and builds its proxy. Routes of this booture's
// plugins may only claim SERVICE.SELF.DOMAIN inside the mesh's domain.
func (g *Gateway) newRoute(r catalog.Route, self string) (*route, error) {
	host, ok := hostName(r.Host)
	if !ok || host == "" || isIPLiteral(host) {
		return nil, fmt.Errorf("host %q: not a host name", r.Host)
	}
	if err := names.Check(r.Service); err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	if rest, in := strings.CutSuffix(host, "."+g.cfg.Domain); in || host == g.cfg.Domain {
		svc, b, _ := strings.Cut(rest, ".")
		if b != self || names.Check(svc) != nil {
			return nil, fmt.Errorf("host %q: want SERVICE.%s.%s", host, self, g.cfg.Domain)
		}
	}
	r.Host = host
	if r.PathPrefix == "" {
		r.PathPrefix = "/"
	}
	if r.PathPrefix[0] != '/' || hasDotSegment(r.PathPrefix) {
		return nil, fmt.Errorf("path prefix %q: want an absolute path without . or .. segments", r.PathPrefix)
	}
	if r.Access == "" {
		r.Access = catalog.AccessMembers
	}
	if _, err := catalog.ParseAccess(string(r.Access)); err != nil {
		return nil, err
	}
	rt := &route{Route: r, maxBody: r.MaxBodyBytes}
	if rt.maxBody == 0 {
		rt.maxBody = g.cfg.MaxBodyBytes
	}
	if r.Redirect != "" {
		switch r.RedirectCode {
		case 0:
			rt.RedirectCode = http.StatusFound
		case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
			http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		default:
			return nil, fmt.Errorf("redirect code %d: want 301, 302, 303, 307 or 308", r.RedirectCode)
		}
		return rt, nil
	}
	u, err := url.Parse(r.Upstream)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("upstream %q: want http(s)://HOST[:PORT][/PATH] without credentials", u.Redacted())
	}
	u.Fragment, u.RawFragment = "", ""
	dial := r.DialTimeout
	if dial <= 0 {
		dial = g.cfg.DialTimeout
	}
	resp := r.ResponseTimeout
	if resp <= 0 {
		resp = g.cfg.ResponseTimeout
	}
	rt.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			// Apps build their links from the name members typed.
			pr.Out.Host = pr.In.Host
			// The inbound X-Forwarded-* headers survive only from the
			// booture itself (ServeHTTP deleted them otherwise).
			if v, ok := pr.In.Header["X-Forwarded-For"]; ok {
				pr.Out.Header["X-Forwarded-For"] = v
			}
			pr.SetXForwarded()
			for _, k := range [...]string{"X-Forwarded-Host", "X-Forwarded-Proto"} {
				if v, ok := pr.In.Header[k]; ok {
					pr.Out.Header[k] = v
				}
			}
			// Apps that log or rate-limit by X-Real-IP get the client's
			// address (or a trusted local front's, kept by ServeHTTP).
			if _, ok := pr.Out.Header["X-Real-Ip"]; !ok {
				if ap, err := netip.ParseAddrPort(pr.In.RemoteAddr); err == nil {
					pr.Out.Header["X-Real-Ip"] = []string{ap.Addr().Unmap().WithZone("").String()}
				}
			}
		},
		Transport:    g.transport(dial, resp),
		BufferPool:   &g.bufs,
		ErrorLog:     g.errLog,
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) { g.proxyError(rt, w, req, err) },
	}
	return rt, nil
}

// hasDotSegment reports whether p has a "." or ".." segment. Browsers
// remove them; a request that still has them tries to escape a prefix
// (/public/../admin) whose access is laxer than its neighbour's.
func hasDotSegment(p string) bool {
	for p != "" {
		var seg string
		seg, p, _ = strings.Cut(p, "/")
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// transportKey identifies a transport: routes with the same timeouts share
// one, and its pool of idle connections outlives snapshots.
type transportKey struct{ dial, resp time.Duration }

func (g *Gateway) transport(dial, resp time.Duration) *http.Transport {
	g.tmu.Lock()
	defer g.tmu.Unlock()
	k := transportKey{dial, resp}
	if t := g.transports[k]; t != nil {
		return t
	}
	d := &net.Dialer{Timeout: dial, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		// Never an environment proxy: upstreams are local.
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &dialError{err}
			}
			return c, nil
		},
		TLSHandshakeTimeout:   dial,
		ResponseHeaderTimeout: resp,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		// Pass the client's Accept-Encoding and the upstream's encoding
		// through untouched.
		DisableCompression: true,
	}
	g.transports[k] = t
	return t
}

// closeIdle closes the idle upstream connections of every transport.
func (g *Gateway) closeIdle() {
	g.tmu.Lock()
	defer g.tmu.Unlock()
	for _, t := range g.transports {
		t.CloseIdleConnections()
	}
}

// dialError marks a failure to connect to the upstream: the service is not
// answering (502), as opposed to answering too slowly (504).
type dialError struct{ err error }

func (e *dialError) Error() string { return "connecting to upstream: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// bufferPool lends ReverseProxy its copy buffers (it would allocate 32 KiB
// per request otherwise).
type bufferPool struct{ p sync.Pool }

const copyBufSize = 32 << 10

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[copyBufSize]byte); ok {
		return v[:]
	}
	return make([]byte, copyBufSize)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) >= copyBufSize {
		b.p.Put((*[copyBufSize]byte)(buf[:copyBufSize]))
	}
}

// recorder remembers the status of a response for metrics and error
// handling. Recorders are pooled: a request must not keep one past
// ServeHTTP.
type recorder struct {
	w           http.ResponseWriter
	status      int
	wroteHeader bool
	hijacked    bool
	body        *limitedBody
}

var recorderPool = sync.Pool{New: func() any { return new(recorder) }}

func (r *recorder) Header() http.Header { return r.w.Header() }

func (r *recorder) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		r.w.WriteHeader(code) // informational (103 Early Hints): not final
		return
	}
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.w.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = http.StatusOK, true
	}
	return r.w.Write(p)
}

// FlushError and Flush let streamed responses (server-sent events) through.
func (r *recorder) FlushError() error {
	if !r.wroteHeader {
		r.status, r.wroteHeader = http.StatusOK, true
	}
	return http.NewResponseController(r.w).Flush()
}

func (r *recorder) Flush() { _ = r.FlushError() }

// Hijack lets upgraded connections (websockets) through.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(r.w).Hijack()
	if err == nil {
		r.hijacked, r.wroteHeader, r.status = true, true, http.StatusSwitchingProtocols
	}
	return c, brw, err
}

// Unwrap gives http.ResponseController the underlying writer (deadlines).
func (r *recorder) Unwrap() http.ResponseWriter { return r.w }

// errBodyTooLarge is what a limitedBody returns past its limit.
var errBodyTooLarge = errors.New("request body too large")

// limitedBody is http.MaxBytesReader with a flag the proxy's error handler
// can read: the transport reads it in another goroutine and the error it
// returns is not guaranteed to be ours. One per request, never pooled: the
// transport may still read it after ServeHTTP returned.
type limitedBody struct {
	rc       io.ReadCloser
	n        int64
	tooLarge atomic.Bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.tooLarge.Load() {
		return 0, errBodyTooLarge
	}
	if len(p) == 0 {
		return 0, nil
	}
	// Read one byte more than allowed to tell "exactly the limit" from
	// "more".
	if int64(len(p))-1 > b.n {
		p = p[:b.n+1]
	}
	n, err := b.rc.Read(p)
	if int64(n) <= b.n {
		b.n -= int64(n)
		return n, err
	}
	n = int(b.n)
	b.n = 0
	b.tooLarge.Store(true)
	return n, errBodyTooLarge
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// ServeHTTP serves the proxy and the portal. It classifies the request's
// source (RemoteAddr) to enforce the services' access.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := recorderPool.Get().(*recorder)
	rec.w = w
	label := labelUnknown
	defer func() {
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		g.m.observeHTTP(label, status, time.Since(start), rec.hijacked)
		*rec = recorder{}
		recorderPool.Put(rec)
	}()
	label = g.serveHTTP(rec, r)
}

func (g *Gateway) serveHTTP(w *recorder, r *http.Request) (label string) {
	s := g.snap.Load()
	if !s.ready {
		w.Header().Set("Retry-After", "5")
		g.writePage(w, r, s, http.StatusServiceUnavailable, pageData{Title: "Starting", Message: "This booture is starting. Try again in a moment.", Retry: true})
		return labelUnknown
	}
	aud := s.net.ClassifyRemote(r.RemoteAddr)
	host, ok := hostName(r.Host)
	if !ok {
		g.writePage(w, r, s, http.StatusBadRequest, pageData{
			Title:   "Bad request",
			Message: "The address of this request is not a valid host name.",
		})
		return labelUnknown
	}
	m := s.lookupHost(host)
	switch m.kind {
	case hostPortal:
		g.servePortal(w, r, s, aud)
		return labelPortal
	case hostLocal:
		g.serveLocal(w, r, s, aud, m)
		return m.service
	case hostLocalDown:
		if !aud.May(m.svc.Access) {
			g.denied(w, r, s, aud, m.service, m.svc.Access)
			return m.service
		}
		g.unavailable(w, r, s, m.svc, m.service)
		return m.service
	case hostElsewhere:
		if m.svc == nil {
			g.writePage(w, r, s, http.StatusNotFound, pageData{
				Title:    "Portal of " + m.booture,
				Message:  "The portal of booture " + m.booture + " is on " + m.booture + ", not on this booture (" + s.self.Name + ").",
				Link:     "http://" + m.booture + s.dotDomain + "/",
				LinkText: "Go to the portal of " + m.booture,
			})
			return labelElsewhere
		}
		if aud == AudiencePublic && m.svc.Access != catalog.AccessPublic {
			break // do not reveal the mesh's services to the LAN
		}
		g.writePage(w, r, s, http.StatusNotFound, pageData{
			Title: "Service " + m.service + " is on booture " + m.booture,
			Message: "Service " + m.service + " lives on booture " + m.booture + ", not on this booture (" + s.self.Name +
				"). Your device asked the wrong booture: check that it uses the mesh's DNS (the DNS line of your WireGuard configuration).",
			Link:     m.svc.URL,
			LinkText: "Open " + m.service + " on " + m.booture,
		})
		return labelElsewhere
	}
	p := pageData{
		Title:   "Unknown address",
		Message: "No service of this booture answers at " + host + ".",
	}
	if aud != AudiencePublic {
		p.Link, p.LinkText = s.portalURL, "See the services of the mesh on the portal of "+s.self.Name
	}
	g.writePage(w, r, s, http.StatusNotFound, p)
	return labelUnknown
}

func (g *Gateway) serveLocal(w *recorder, r *http.Request, s *snapshot, aud Audience, m hostMatch) {
	hr := m.routes
	if r.Method == http.MethodConnect || r.URL.Path == "" || r.URL.Path[0] != '/' {
		if !aud.May(hr.access) {
			g.denied(w, r, s, aud, m.service, hr.access)
			return
		}
		g.writePage(w, r, s, http.StatusBadRequest, pageData{Title: "Bad request", Message: "This request has no path to forward."})
		return
	}
	rt := hr.match(r.URL.Path)
	access := hr.access
	if rt != nil {
		access = rt.Access
	}
	if !aud.May(access) {
		g.denied(w, r, s, aud, m.service, access)
		return
	}
	if m.svc != nil && m.svc.Health == catalog.HealthUnhealthy {
		g.unavailable(w, r, s, m.svc, m.service)
		return
	}
	if rt == nil {
		g.writePage(w, r, s, http.StatusNotFound, pageData{
			Title:   "Page not found",
			Message: "Service " + m.service + " on booture " + s.self.Name + " has nothing at this address.",
			Link:    "/", LinkText: "Go to the home page of " + m.service,
		})
		return
	}
	if hasDotSegment(r.URL.Path) {
		g.writePage(w, r, s, http.StatusBadRequest, pageData{Title: "Bad request", Message: "The path of this request has . or .. segments."})
		return
	}
	if up := upgradeType(r.Header); up != "" && (!rt.Websocket || !strings.EqualFold(up, "websocket")) {
		g.writePage(w, r, s, http.StatusBadRequest, pageData{
			Title:   "Connection upgrade refused",
			Message: "Service " + m.service + " does not accept " + clip(up, 20) + " connections at this address.",
		})
		return
	}
	if rt.Redirect != "" {
		http.Redirect(w, r, rt.Redirect, rt.RedirectCode)
		return
	}
	if rt.maxBody >= 0 {
		if r.ContentLength > rt.maxBody {
			g.tooLarge(w, r, s, m.service, rt.maxBody)
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			w.body = &limitedBody{rc: r.Body, n: rt.maxBody}
			r.Body = w.body
		}
	}
	stripClientClaims(r.Header, aud == AudienceSelf)
	rt.proxy.ServeHTTP(w, r)
}

// Headers through which upstreams learn the client's address. They are
// canonical (http.CanonicalHeaderKey) so that the map can be indexed.
var (
	// trustedClaims are kept when the client is the booture itself (a local
	// TLS front tells the real client), dropped from anyone else.
	trustedClaims = [...]string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip"}
	// untrustedClaims are always dropped: no front of ours sets them.
	// Forwarded is dropped by ReverseProxy itself.
	untrustedClaims = [...]string{"Client-Ip", "True-Client-Ip", "Forwarded"}
)

// stripClientClaims removes from h the headers in which a client claims
// another address than its own, unless the client is the booture itself
// (self) for the headers a local front sets. Upstreams behind CGI or
// FastCGI (PHP's $_SERVER) see X_Real_IP as X-Real-IP, so names are
// compared with '_' read as '-'.
func stripClientClaims(h http.Header, self bool) {
	if !self {
		for _, k := range trustedClaims {
			delete(h, k)
		}
	}
	for _, k := range untrustedClaims {
		delete(h, k)
	}
	for k := range h {
		if strings.IndexByte(k, '_') < 0 && k == http.CanonicalHeaderKey(k) {
			continue // the common case: already handled above, no allocation
		}
		n := http.CanonicalHeaderKey(strings.ReplaceAll(k, "_", "-"))
		if slices.Contains(untrustedClaims[:], n) || slices.Contains(trustedClaims[:], n) && (!self || n != k) {
			delete(h, k)
		}
	}
}

// upgradeType is the protocol a request asks to switch to, as ReverseProxy
// sees it.
func upgradeType(h http.Header) string {
	if !httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
		return ""
	}
	return h.Get("Upgrade")
}

// proxyError answers a request the upstream failed: r is the outbound
// request, w the recorder ServeHTTP passed to the proxy.
func (g *Gateway) proxyError(rt *route, w http.ResponseWriter, r *http.Request, err error) {
	rec, _ := w.(*recorder)
	s := g.snap.Load()
	switch {
	case rec != nil && (rec.wroteHeader || rec.hijacked):
		// Too late for a page (a failed websocket after the switch).
		g.log.Debug("upstream failed after response started", "service", rt.Service, "err", err)
	case rec != nil && rec.body != nil && rec.body.tooLarge.Load() || errors.Is(err, errBodyTooLarge):
		g.tooLarge(w, r, s, rt.Service, rt.maxBody)
	case r.Context().Err() != nil:
		// The client went away; nobody reads an answer.
		if rec != nil {
			rec.status = statusClientClosed
		}
	case errors.As(err, new(*dialError)):
		g.log.Warn("upstream not answering", "service", rt.Service, "err", err)
		g.writePage(w, r, s, http.StatusBadGateway, pageData{
			Title:   "Service not answering",
			Message: "Service " + rt.Service + " on booture " + s.self.Name + " is not answering. It may be starting or stopped; try again in a moment, or tell the admin of " + s.self.Name + ".",
			Retry:   true,
		})
	case isTimeout(err):
		g.log.Warn("upstream too slow", "service", rt.Service, "err", err)
		g.writePage(w, r, s, http.StatusGatewayTimeout, pageData{
			Title:   "Service too slow",
			Message: "Service " + rt.Service + " on booture " + s.self.Name + " took too long to answer. Try again in a moment.",
			Retry:   true,
		})
	default:
		g.log.Warn("upstream failed", "service", rt.Service, "err", err)
		g.writePage(w, r, s, http.StatusBadGateway, pageData{
			Title:   "Service not answering",
			Message: "Service " + rt.Service + " on booture " + s.self.Name + " is not answering properly. Try again in a moment, or tell the admin of " + s.self.Name + ".",
			Retry:   true,
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func (g *Gateway) tooLarge(w http.ResponseWriter, r *http.Request, s *snapshot, service string, limit int64) {
	// The rest of the body stays unread: do not reuse the connection.
	w.Header().Set("Connection", "close")
	g.writePage(w, r, s, http.StatusRequestEntityTooLarge, pageData{
		Title:   "Too large",
		Message: "What you sent is larger than service " + service + " accepts (" + formatBytes(limit) + ").",
	})
}

func (g *Gateway) denied(w http.ResponseWriter, r *http.Request, s *snapshot, aud Audience, service string, access catalog.Access) {
	var why string
	switch access {
	case catalog.AccessMesh:
		why = "open to the members of the bootures of the mesh. Connect with your WireGuard app to your booture, then try again."
	case catalog.AccessPublic:
		why = "open to everyone." // unreachable: public allows all
	default:
		why = "open to the members of booture " + s.self.Name + " only. Connect with your WireGuard app to " + s.self.Name + ", then try again."
	}
	g.writePage(w, r, s, http.StatusForbidden, pageData{
		Title:   "Access restricted",
		Message: "Service " + service + " on booture " + s.self.Name + " is " + why,
		Detail:  "Access level of this service: " + string(access) + ". You are connecting as: " + aud.String() + ".",
	})
}

func (g *Gateway) unavailable(w http.ResponseWriter, r *http.Request, s *snapshot, svc *catalog.Service, service string) {
	msg := "Service " + service + " on booture " + s.self.Name + " is not available right now"
	if svc != nil && svc.Health == catalog.HealthUnhealthy {
		msg += " (" + string(svc.Health) + ")"
	} else {
		msg += " (not started)"
	}
	p := pageData{Title: "Service unavailable", Message: msg + ". Try again later.", Retry: true}
	if svc != nil {
		p.Detail = svc.Message
	}
	w.Header().Set("Retry-After", "30")
	g.writePage(w, r, s, http.StatusServiceUnavailable, p)
}

// clip shortens a client-supplied string for a page.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

var _ http.Handler = (*Gateway)(nil)
var _ httputil.BufferPool = (*bufferPool)(nil)
