package gateway

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// forwarder sends names outside the mesh's domain to upstream resolvers,
// and fails fast when none is believed reachable: offline, a member's
// browser must not wait seconds for every name it tries.
type forwarder struct {
	cfg Config
	log *slog.Logger
	m   *metrics
	now func() time.Time
	sem chan struct{}
	udp *dns.Client
	tcp *dns.Client
	// exch asks one upstream: exchange, or a fake upstream in tests.
	exch func(ctx context.Context, out *dns.Msg, u *upstream, tcp bool) (*dns.Msg, error)

	mu         sync.Mutex
	set        []*upstream // current upstreams, in order of preference
	nextReload time.Time
	lastErr    string // last resolv.conf error, logged once

	listenMu  sync.Mutex
	listening map[netip.AddrPort]int // our DNS sockets: never upstreams
}

// upstream is one resolver and what we know of its health.
type upstream struct {
	addr     netip.AddrPort
	hostport string

	mu        sync.Mutex
	fails     int // failures since it was last up: sets the backoff
	downUntil time.Time
	probing   bool
	// Names that failed since the last answer (at most Config.UpstreamDownAfter),
	// the first of them at firstFail. One name failing says little: its own
	// servers may be down, or a client may ask for garbage on purpose.
	failed    []string
	firstFail time.Time
}

// healthRules are the Config fields that judge an upstream.
type healthRules struct {
	backoff, backoffMax, window time.Duration
	downAfter                   int
}

func rulesOf(c Config) healthRules {
	return healthRules{c.UpstreamBackoff, c.UpstreamBackoffMax, c.UpstreamFailWindow, c.UpstreamDownAfter}
}

func newForwarder(cfg Config, log *slog.Logger, m *metrics) *forwarder {
	f := &forwarder{
		cfg:       cfg,
		log:       log,
		m:         m,
		now:       time.Now,
		sem:       make(chan struct{}, cfg.MaxForwards),
		udp:       &dns.Client{Net: "udp", UDPSize: ednsSize, Timeout: cfg.ForwardTimeout},
		tcp:       &dns.Client{Net: "tcp", Timeout: cfg.ForwardTimeout},
		listening: make(map[netip.AddrPort]int),
	}
	f.exch = f.exchange
	if len(cfg.Upstreams) > 0 {
		f.set = f.merge(cfg.Upstreams)
	}
	return f
}

// take reports whether a query may be sent to u now: it is healthy, or its
// backoff is over and no other query is probing it.
func (u *upstream) take(now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case u.fails == 0:
		return true
	case now.Before(u.downUntil) || u.probing:
		return false
	}
	u.probing = true
	return true
}

// Outcomes of an attempt.
type outcome uint8

const (
	answered    outcome = iota
	nameFailed          // no answer for this name (timeout, garbage): maybe the name's fault
	unreachable         // refused or no route: the upstream's fault, whatever the name
)

// done records the outcome of an attempt to resolve name; it reports
// whether u changed between up and down. An up upstream goes down when it
// is unreachable, or when r.downAfter different names failed within
// r.window with no answer in between; a down one (being probed) stays down
// on any failure, for twice as long.
func (u *upstream) done(now time.Time, o outcome, name string, r healthRules) (changed bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.probing = false
	if o == answered {
		changed = u.fails > 0
		u.fails, u.failed = 0, u.failed[:0]
		return changed
	}
	if o == nameFailed && u.fails == 0 {
		if len(u.failed) > 0 && now.Sub(u.firstFail) > r.window {
			u.failed = u.failed[:0]
		}
		if !slices.Contains(u.failed, name) {
			if len(u.failed) == 0 {
				u.firstFail = now
			}
			u.failed = append(u.failed, name)
		}
		if len(u.failed) < r.downAfter {
			return false
		}
	}
	u.failed = u.failed[:0]
	u.fails++
	backoff := r.backoffMax
	if u.fails < 16 {
		backoff = min(r.backoff<<(u.fails-1), r.backoffMax)
	}
	u.downUntil = now.Add(backoff)
	return u.fails == 1
}

// release ends a probe without a verdict.
func (u *upstream) release() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.probing = false
}

func (u *upstream) up(now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.fails == 0 || !now.Before(u.downUntil)
}

// merge returns upstreams for addrs, keeping the health of those already
// known.
func (f *forwarder) merge(addrs []netip.AddrPort) []*upstream {
	out := make([]*upstream, 0, len(addrs))
	for _, a := range addrs {
		if slices.ContainsFunc(out, func(u *upstream) bool { return u.addr == a }) {
			continue
		}
		i := slices.IndexFunc(f.set, func(u *upstream) bool { return u.addr == a })
		if i >= 0 {
			out = append(out, f.set[i])
			continue
		}
		out = append(out, &upstream{addr: a, hostport: a.String()})
	}
	return out
}

// upstreams returns the current upstreams, re-reading resolv.conf when it
// is due.
func (f *forwarder) upstreams(now time.Time) []*upstream {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.cfg.Upstreams) > 0 || f.cfg.ResolvConf == "" || now.Before(f.nextReload) {
		return f.set
	}
	f.nextReload = now.Add(f.cfg.ResolvConfCheck)
	addrs, err := readResolvConf(f.cfg.ResolvConf, f.cfg.ResolvedConf)
	if err != nil {
		if msg := err.Error(); msg != f.lastErr {
			f.log.Warn("reading dns upstreams; forwarding nothing", "err", err)
			f.lastErr = msg
		}
	} else {
		f.lastErr = ""
	}
	set := f.merge(addrs)
	if !slices.EqualFunc(set, f.set, func(a, b *upstream) bool { return a == b }) {
		f.log.Info("dns upstreams", "upstreams", addrs)
	}
	f.set = set
	f.updateGauge(now)
	return f.set
}

func (f *forwarder) updateGauge(now time.Time) {
	var up, down int
	for _, u := range f.set {
		if u.up(now) {
			up++
		} else {
			down++
		}
	}
	f.m.upstreams.WithLabelValues("up").Set(float64(up))
	f.m.upstreams.WithLabelValues("down").Set(float64(down))
}

// readResolvConf returns the usable nameservers of a resolv.conf: loopback
// stubs and unspecified addresses are skipped; when a loopback stub was
// skipped, systemd-resolved's real upstreams (resolved) are used as well.
func readResolvConf(path, resolved string) ([]netip.AddrPort, error) {
	addrs, loopback, err := parseResolvConf(path)
	if err != nil {
		return nil, err
	}
	if loopback && resolved != "" {
		more, _, err := parseResolvConf(resolved)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return addrs, err
		}
		addrs = append(addrs, more...)
	}
	return addrs, nil
}

func parseResolvConf(path string) (addrs []netip.AddrPort, skippedLoopback bool, err error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, false, fmt.Errorf("reading %s: %w", path, err)
	}
	port, err := strconv.ParseUint(cc.Port, 10, 16)
	if err != nil || port == 0 {
		port = 53
	}
	for _, s := range cc.Servers {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue // resolv.conf allows only addresses; ignore the rest
		}
		a = a.Unmap()
		switch {
		case a.IsLoopback():
			skippedLoopback = true
		case a.IsUnspecified():
		default:
			addrs = append(addrs, netip.AddrPortFrom(a, uint16(port)))
		}
	}
	return addrs, skippedLoopback, nil
}

// listen records (n=1) or forgets (n=-1) one of our DNS sockets.
func (f *forwarder) listen(a netip.AddrPort, n int) {
	f.listenMu.Lock()
	defer f.listenMu.Unlock()
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	if f.listening[a] += n; f.listening[a] <= 0 {
		delete(f.listening, a)
	}
}

// isSelf reports whether sending to a would reach this gateway itself.
func (f *forwarder) isSelf(s *snapshot, a netip.AddrPort) bool {
	if ip := a.Addr(); ip == s.self.IPv4 || ip == s.self.IPv6 {
		return true
	}
	f.listenMu.Lock()
	defer f.listenMu.Unlock()
	return f.listening[a] > 0
}

// forward answers req through the upstreams. resp is the reply prepared by
// answerDNS (id, question, EDNS), used for the failures.
func (f *forwarder) forward(ctx context.Context, s *snapshot, req, resp *dns.Msg, tcp bool) (*dns.Msg, string) {
	now := f.now()
	ups := f.upstreams(now)
	select {
	case f.sem <- struct{}{}:
		defer func() { <-f.sem }()
	default:
		resp.Rcode = dns.RcodeServerFailure
		setEDE(resp, dns.ExtendedErrorCodeOther, "too many queries in flight")
		return resp, howFailed
	}

	// Our own query: the client's EDNS options (cookies, client subnet)
	// are between it and us.
	out := new(dns.Msg)
	out.Id = dns.Id()
	out.RecursionDesired = true
	out.CheckingDisabled = req.CheckingDisabled
	out.AuthenticatedData = req.AuthenticatedData
	out.Question = req.Question
	do := false
	if opt := req.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	out.SetEdns0(ednsSize, do)

	var fallback *dns.Msg
	tried := 0
	qname := lower(req.Question[0].Name)
	for _, u := range ups {
		if ctx.Err() != nil {
			break
		}
		if f.isSelf(s, u.addr) || !u.take(now) {
			continue
		}
		tried++
		ectx, cancel := context.WithTimeout(ctx, f.cfg.ForwardTimeout)
		r, err := f.exch(ectx, out, u, tcp)
		cancel()
		if ctx.Err() != nil {
			// Shutting down: not the upstream's fault.
			u.release()
			break
		}
		if changed := u.done(f.now(), outcomeOf(err), qname, rulesOf(f.cfg)); changed {
			if err != nil {
				f.log.Info("dns upstream down; skipping it for a while", "upstream", u.hostport, "err", err)
			} else {
				f.log.Info("dns upstream reachable again", "upstream", u.hostport)
			}
			f.mu.Lock()
			f.updateGauge(f.now())
			f.mu.Unlock()
		}
		if err != nil {
			continue
		}
		r.Id = req.Id
		r.Question = req.Question // the client's spelling (0x20)
		r.Extra = slices.DeleteFunc(r.Extra, func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeOPT })
		if opt := req.IsEdns0(); opt != nil {
			r.SetEdns0(ednsSize, do)
		}
		r.Compress = true
		if r.Rcode == dns.RcodeServerFailure || r.Rcode == dns.RcodeRefused {
			if fallback == nil {
				fallback = r
			}
			continue // another upstream may do better
		}
		return r, howForwarded
	}
	if fallback != nil {
		return fallback, howForwarded
	}
	resp.Rcode = dns.RcodeServerFailure
	if tried == 0 {
		setEDE(resp, dns.ExtendedErrorCodeNetworkError, "offline: no upstream resolver reachable")
		return resp, howOffline
	}
	setEDE(resp, dns.ExtendedErrorCodeNoReachableAuthority, "upstream resolvers did not answer")
	return resp, howFailed
}

// outcomeOf judges an attempt by its error.
func outcomeOf(err error) outcome {
	switch {
	case err == nil:
		return answered
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		// Offline (no route) or no resolver there: every name would fail.
		return unreachable
	}
	return nameFailed
}

// exchange sends out to u (within ctx's deadline, ForwardTimeout) over UDP, and again over TCP when the answer is
// truncated and the client came over TCP (a UDP client gets the truncated
// answer and retries over TCP itself). UDP first whatever the client's
// transport: cheaper, and one transport to judge an upstream's health by.
func (f *forwarder) exchange(ctx context.Context, out *dns.Msg, u *upstream, tcp bool) (*dns.Msg, error) {
	r, _, err := f.udp.ExchangeContext(ctx, out, u.hostport)
	if err == nil && r.Truncated && tcp {
		r, _, err = f.tcp.ExchangeContext(ctx, out, u.hostport)
	}
	if err != nil {
		return nil, fmt.Errorf("asking %s: %w", u.hostport, err)
	}
	if !r.Response || len(r.Question) != 1 || !equalFold(r.Question[0].Name, out.Question[0].Name) ||
		r.Question[0].Qtype != out.Question[0].Qtype {
		return nil, fmt.Errorf("asking %s: answer does not match the question", u.hostport)
	}
	return r, nil
}

func equalFold(a, b string) bool { return len(a) == len(b) && lower(a) == lower(b) }
