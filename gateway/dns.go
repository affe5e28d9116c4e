package gateway

import (
	"context"
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// ednsSize is the UDP payload size the gateway advertises and asks for:
// the DNS flag day 2020 value, safe from fragmentation on every path.
const ednsSize = 1232

// How a query was answered, for metrics.
const (
	howLocal     = "local"
	howForwarded = "forwarded"
	howOffline   = "offline" // no upstream believed reachable: failed fast
	howFailed    = "failed"  // upstreams tried and failed
	howRefused   = "refused"
	howLimited   = "ratelimited"
	howInvalid   = "invalid"
)

// dnsHandler serves DNS for one Serve call: ctx ends the forwards in
// flight when Serve stops.
type dnsHandler struct {
	g   *Gateway
	ctx context.Context
}

func (h dnsHandler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) { h.g.serveDNS(h.ctx, w, req) }

// DNSHandler returns the DNS handler to serve on sockets the daemon made
// itself (Serve makes its own); ctx bounds the forwarded queries.
func (g *Gateway) DNSHandler(ctx context.Context) dns.Handler { return dnsHandler{g, ctx} }

func (g *Gateway) serveDNS(ctx context.Context, w dns.ResponseWriter, req *dns.Msg) {
	defer func() {
		// The dns package does not recover: a panic would take the
		// daemon down.
		if p := recover(); p != nil {
			g.log.Error("panic answering a dns query", "panic", p)
			m := &dns.Msg{MsgHdr: dns.MsgHdr{Id: req.Id, Response: true, Rcode: dns.RcodeServerFailure}}
			_ = w.WriteMsg(m)
		}
	}()
	src, tcp := remoteAddr(w.RemoteAddr())
	resp, how := g.answerDNS(ctx, req, src, tcp)
	if resp == nil {
		return
	}
	size := dns.MaxMsgSize
	if !tcp {
		size = dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(min(max(opt.UDPSize(), dns.MinMsgSize), ednsSize))
		}
	}
	resp.Truncate(size)
	if err := w.WriteMsg(resp); err != nil {
		g.log.Debug("writing dns answer", "err", err)
	}
	g.m.dnsQuery.WithLabelValues(how, rcodeString(resp.Rcode)).Inc()
}

func rcodeString(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return "other"
}

// remoteAddr returns the source of a query and whether it came over TCP.
func remoteAddr(a net.Addr) (netip.Addr, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr(), false
	case *net.TCPAddr:
		return a.AddrPort().Addr(), true
	}
	return netip.Addr{}, false
}

// answerDNS builds the answer to req from src, or nil for no answer at
// all (a response sent to us: answering could loop or amplify).
func (g *Gateway) answerDNS(ctx context.Context, req *dns.Msg, src netip.Addr, tcp bool) (*dns.Msg, string) {
	if req.Response {
		return nil, howInvalid
	}
	resp := new(dns.Msg)
	resp.Id, resp.Response, resp.Opcode = req.Id, true, req.Opcode
	if req.Opcode != dns.OpcodeQuery {
		resp.Rcode = dns.RcodeNotImplemented
		return resp, howInvalid
	}
	nopt := 0
	for _, rr := range req.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			nopt++
		}
	}
	if len(req.Question) != 1 || nopt > 1 {
		resp.Rcode = dns.RcodeFormatError
		return resp, howInvalid
	}
	resp.SetReply(req)
	opt := req.IsEdns0()
	if opt != nil {
		resp.SetEdns0(ednsSize, false)
		if opt.Version() != 0 {
			resp.Rcode = dns.RcodeBadVers
			return resp, howInvalid
		}
	}
	s := g.snap.Load()
	aud := s.net.Classify(src)
	if aud == AudiencePublic {
		// The LAN reaches the mesh addresses too (weak host model): it
		// gets neither the mesh's names nor recursion.
		resp.Rcode = dns.RcodeRefused
		setEDE(resp, dns.ExtendedErrorCodeProhibited, "this DNS server is for the mesh")
		return resp, howRefused
	}
	resp.RecursionAvailable = true
	if aud != AudienceSelf && !g.limits.allow(clientKey(s.net, src)) {
		resp.Rcode = dns.RcodeRefused
		setEDE(resp, dns.ExtendedErrorCodeOther, "rate limited")
		return resp, howLimited
	}
	q := req.Question[0]
	qname := lower(q.Name)
	if qname == s.zone || strings.HasSuffix(qname, "."+s.zone) {
		g.answerLocal(s, resp, q, qname)
		return resp, howLocal
	}
	if q.Qclass != dns.ClassINET {
		resp.Rcode = dns.RcodeRefused
		return resp, howRefused
	}
	return g.fwd.forward(ctx, s, req, resp, tcp)
}

// answerLocal answers a name of the mesh's domain from the snapshot.
func (g *Gateway) answerLocal(s *snapshot, resp *dns.Msg, q dns.Question, qname string) {
	if !s.ready {
		// Not knowing yet is not "does not exist": do not get cached.
		resp.Rcode = dns.RcodeServerFailure
		setEDE(resp, dns.ExtendedErrorCodeNotReady, "booture starting")
		return
	}
	resp.Authoritative = true
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		resp.Rcode = dns.RcodeRefused
		resp.Authoritative = false
		return
	}
	if qname == s.zone {
		switch q.Qtype {
		case dns.TypeSOA:
			resp.Answer = append(resp.Answer, g.soa(s))
		case dns.TypeNS:
			resp.Answer = append(resp.Answer, g.ns(s))
		case dns.TypeANY:
			resp.Answer = append(resp.Answer, g.soa(s), g.ns(s))
		default:
			resp.Ns = append(resp.Ns, g.soa(s))
		}
		return
	}
	rest := qname[:len(qname)-len(s.zone)-1]
	n, ok := s.names[rest]
	if !ok {
		resp.Rcode = dns.RcodeNameError
		resp.Ns = append(resp.Ns, g.soa(s))
		return
	}
	ttl := uint32(g.cfg.TTL.Seconds())
	// Owner names echo the question's case (0x20 case randomization).
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	if (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY) && n.v4.IsValid() {
		resp.Answer = append(resp.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: n.v4.AsSlice()})
	}
	if (q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY) && n.v6.IsValid() {
		resp.Answer = append(resp.Answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: n.v6.AsSlice()})
	}
	if len(resp.Answer) == 0 {
		// NODATA: the name exists, not with this type.
		resp.Ns = append(resp.Ns, g.soa(s))
	}
}

func (g *Gateway) soa(s *snapshot) dns.RR {
	neg := uint32(g.cfg.NegativeTTL.Seconds())
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: s.zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: neg},
		Ns:      s.selfHost + ".",
		Mbox:    "hostmaster." + s.zone,
		Serial:  s.serial,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  neg,
	}
}

func (g *Gateway) ns(s *snapshot) dns.RR {
	return &dns.NS{
		Hdr: dns.RR_Header{Name: s.zone, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: uint32(g.cfg.TTL.Seconds())},
		Ns:  s.selfHost + ".",
	}
}

// setEDE adds an Extended DNS Error (RFC 8914) when the client speaks
// EDNS: stub resolvers show it (e.g. "offline") where SERVFAIL says nothing.
func setEDE(resp *dns.Msg, code uint16, text string) {
	if opt := resp.IsEdns0(); opt != nil {
		opt.Option = append(opt.Option, &dns.EDNS0_EDE{InfoCode: code, ExtraText: text})
	}
}
