package gateway

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/booture/booture/catalog"
)

// Gateway is the HTTP proxy, portal and DNS server of one booture. Create it
// with New, feed it with Update, run it with Serve. All methods are safe for
// concurrent use.
type Gateway struct {
	cfg    Config
	log    *slog.Logger
	errLog *log.Logger
	m      *metrics
	fwd    *forwarder
	limits *clientLimits
	ifaces *ifaceSet // nil: DNS over UDP from any interface

	snap   atomic.Pointer[snapshot]
	serial atomic.Uint32
	bufs   bufferPool

	tmu        sync.Mutex
	transports map[transportKey]*http.Transport
}

// New returns a gateway that knows nothing until the first Update: it
// answers 503 on the portal and SERVFAIL for mesh names meanwhile. Metrics
// are registered on reg (nil: not registered); log may be nil.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("subsystem", "gateway")
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		cfg:        cfg,
		log:        logger,
		errLog:     slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		m:          m,
		fwd:        newForwarder(cfg, logger, m),
		limits:     newClientLimits(cfg.DNSClientRate, cfg.DNSClientBurst, cfg.DNSClients),
		transports: make(map[transportKey]*http.Transport),
	}
	if cfg.MeshInterface != "" {
		g.ifaces = newIfaceSet(cfg.MeshInterface)
	}
	g.snap.Store(g.emptySnapshot())
	return g, nil
}

// Update replaces what the gateway serves with st, atomically: requests
// and queries in flight finish with the previous state. Invalid routes,
// services and bootures are skipped with a warning in the log (one bad
// plugin must not take the others down); an unusable Self or Network is an
// error wrapping ErrInvalidState, and the previous state stays.
func (g *Gateway) Update(st State) error {
	s, warns, err := g.buildSnapshot(st)
	if err != nil {
		return err
	}
	for _, w := range warns {
		g.log.Warn("ignoring part of the gateway state", "err", w)
	}
	g.snap.Store(s)
	return nil
}

// Listen says where Serve listens. The daemon passes its mesh addresses
// (port 80 and 53) and, to offer public services to the LAN, its LAN
// address for HTTP. Never give the LAN address for DNS: public sources are
// refused.
type Listen struct {
	HTTP []netip.AddrPort // proxy and portal
	DNS  []netip.AddrPort // DNS over UDP and TCP
}

// MeshListen is the usual Listen: HTTP on port 80 and DNS on port 53 of
// the booture's mesh addresses, plus HTTP on port 80 of lan (the LAN
// address, for public services).
func MeshListen(self catalog.Booture, lan ...netip.Addr) Listen {
	var l Listen
	for _, a := range []netip.Addr{self.IPv4, self.IPv6} {
		if a.IsValid() {
			l.HTTP = append(l.HTTP, netip.AddrPortFrom(a, 80))
			l.DNS = append(l.DNS, netip.AddrPortFrom(a, 53))
		}
	}
	for _, a := range lan {
		l.HTTP = append(l.HTTP, netip.AddrPortFrom(a, 80))
	}
	return l
}

// Serve listens on l and serves until ctx ends, then shuts down: requests
// in flight get Config.ShutdownTimeout to finish, websockets and forwarded
// queries are cut. It returns nil after ctx ends, or the first error of a
// listener (every listener is then closed). To move to new addresses (the
// site was renumbered), cancel ctx and call Serve again.
func (g *Gateway) Serve(ctx context.Context, l Listen) error {
	if len(l.HTTP)+len(l.DNS) == 0 {
		return errors.New("gateway: nothing to listen on")
	}
	lc := net.ListenConfig{}
	if g.cfg.FreeBind {
		lc.Control = freebind
	}
	var (
		httpLns []net.Listener
		dnsSrvs []*dns.Server
	)
	closeAll := func() {
		for _, ln := range httpLns {
			ln.Close()
		}
		for _, s := range dnsSrvs {
			if s.Listener != nil {
				s.Listener.Close()
			} else {
				s.PacketConn.Close()
			}
		}
	}
	// hard ends what graceful shutdown does not wait for: hijacked
	// connections and forwarded queries.
	hard, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()
	dh := g.DNSHandler(hard)
	for _, a := range l.HTTP {
		ln, err := lc.Listen(ctx, tcpNet(a), a.String())
		if err != nil {
			closeAll()
			return fmt.Errorf("gateway: listening for http on %s: %w", a, err)
		}
		httpLns = append(httpLns, ln)
	}
	for _, a := range l.DNS {
		pc, err := lc.ListenPacket(ctx, "udp"+family(a), a.String())
		if err != nil {
			closeAll()
			return fmt.Errorf("gateway: listening for dns on udp %s: %w", a, err)
		}
		if g.ifaces != nil {
			mc, err := meshOnly(pc, g.ifaces, g.m.dnsDropped.Inc)
			if err != nil {
				pc.Close()
				closeAll()
				return fmt.Errorf("gateway: dns on udp %s: %w", a, err)
			}
			pc = mc
		}
		dnsSrvs = append(dnsSrvs, g.dnsServer(dh, pc, nil))
		ln, err := lc.Listen(ctx, tcpNet(a), a.String())
		if err != nil {
			closeAll()
			return fmt.Errorf("gateway: listening for dns on tcp %s: %w", a, err)
		}
		dnsSrvs = append(dnsSrvs, g.dnsServer(dh, nil, ln))
	}
	for _, a := range l.DNS {
		g.fwd.listen(a, 1)
		defer g.fwd.listen(a, -1)
	}

	srv := &http.Server{
		Handler:           g,
		ReadHeaderTimeout: g.cfg.ReadHeaderTimeout,
		IdleTimeout:       g.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          g.errLog,
		BaseContext:       func(net.Listener) context.Context { return hard },
	}
	n := len(httpLns) + len(dnsSrvs)
	errc := make(chan error, n)
	for _, ln := range httpLns {
		go func() {
			err := srv.Serve(ln)
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			errc <- wrapServe("http", ln.Addr(), err)
		}()
	}
	started := make([]chan struct{}, len(dnsSrvs))
	exited := make([]chan struct{}, len(dnsSrvs))
	for i, s := range dnsSrvs {
		started[i], exited[i] = make(chan struct{}), make(chan struct{})
		s.NotifyStartedFunc = func() { close(started[i]) }
		go func() {
			err := s.ActivateAndServe()
			close(exited[i])
			addr := net.Addr(nil)
			if s.Listener != nil {
				addr = s.Listener.Addr()
			} else {
				addr = s.PacketConn.LocalAddr()
			}
			errc <- wrapServe("dns", addr, err)
		}()
	}
	g.log.Info("gateway serving", "http", l.HTTP, "dns", l.DNS)

	var first error
	pending := n
	select {
	case <-ctx.Done():
	case first = <-errc:
		pending--
	}

	sctx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		g.log.Warn("http requests cut at shutdown", "err", err)
	}
	hardStop()
	srv.Close()
	for i, s := range dnsSrvs {
		// ShutdownContext fails on a server that has not started yet;
		// wait for it to start or to have failed.
		select {
		case <-started[i]:
			_ = s.ShutdownContext(sctx)
		case <-exited[i]:
		case <-sctx.Done():
		}
	}
	closeAll()
	for ; pending > 0; pending-- {
		if err := <-errc; first == nil {
			first = err
		}
	}
	g.closeIdle()
	if first != nil {
		return first
	}
	g.log.Info("gateway stopped")
	return nil
}

func (g *Gateway) dnsServer(h dns.Handler, pc net.PacketConn, ln net.Listener) *dns.Server {
	return &dns.Server{
		PacketConn:   pc,
		Listener:     ln,
		Handler:      h,
		UDPSize:      ednsSize,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
	}
}

func wrapServe(what string, a net.Addr, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("gateway: serving %s on %s: %w", what, a, err)
}

func family(a netip.AddrPort) string {
	if a.Addr().Unmap().Is4() {
		return "4"
	}
	return "6"
}

func tcpNet(a netip.AddrPort) string { return "tcp" + family(a) }
