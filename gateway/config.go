package gateway

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/booture/booture/catalog"
	"github.com/booture/booture/internal/names"
)

// Config is the gateway's static configuration. Start from DefaultConfig:
// a zero field is an error for Validate, not an implicit default.
type Config struct {
	// Domain is the DNS domain of the mesh: bootures are BOOTURE.Domain and
	// services SERVICE.BOOTURE.Domain.
	Domain string

	// MaxBodyBytes is the request body limit of routes whose MaxBodyBytes
	// is 0.
	MaxBodyBytes int64
	// DialTimeout and ResponseTimeout bound the connection to an upstream
	// and the wait for its response headers, for routes that leave them 0.
	DialTimeout     time.Duration
	ResponseTimeout time.Duration
	// ReadHeaderTimeout and IdleTimeout protect the HTTP server from slow
	// or idle clients. There is no write timeout: downloads and websockets
	// may last long.
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	// ShutdownTimeout is how long Serve waits for requests in flight when
	// its context ends, before it closes everything.
	ShutdownTimeout time.Duration
	// FreeBind lets Serve bind addresses that are not (yet) assigned to an
	// interface (Linux IP_FREEBIND): the mesh addresses appear only when the
	// WireGuard interface is configured, possibly after the gateway starts,
	// and must not make it fail.
	FreeBind bool

	// MeshInterface is the WireGuard interface. When set, the DNS server
	// answers UDP queries only when they arrive by it or by loopback (the
	// box itself), and drops the others unanswered: the LAN can reach the
	// mesh addresses too (see meshonly.go). Empty: any interface.
	MeshInterface string
	// DNSClientRate and DNSClientBurst bound the queries of each client
	// (an address; an IPv6 /64 outside this booture's site): a token
	// bucket refilled at DNSClientRate per second holding DNSClientBurst.
	// Beyond it, queries are refused. The booture itself is not limited.
	// DNSClients bounds the clients tracked at once.
	DNSClientRate  float64
	DNSClientBurst int
	DNSClients     int

	// Upstreams are the resolvers names outside Domain are forwarded to.
	// When empty, they are read from ResolvConf (and re-read when it
	// changes), skipping:
	//   - loopback addresses: a stub resolver on the box (systemd-resolved's
	//     127.0.0.53, a dnsmasq) may be configured to ask this booture for
	//     mesh names, which would loop back to us; when one was skipped and
	//     ResolvedConf exists, the stub's own upstreams are read from there;
	//   - unspecified addresses.
	// The booture's own mesh addresses and the addresses the DNS server
	// listens on are never used, whatever the source (a direct loop). List
	// an upstream here explicitly to use a loopback resolver.
	Upstreams []netip.AddrPort
	// ResolvConf is the resolv.conf read when Upstreams is empty; "" means
	// no forwarding at all (a fully offline booture).
	ResolvConf string
	// ResolvedConf is systemd-resolved's list of real upstreams, read when
	// ResolvConf only names loopback stubs.
	ResolvedConf string
	// ResolvConfCheck is how often, at most, ResolvConf is re-read (lazily,
	// on a forwarded query): DHCP and network changes rewrite it.
	ResolvConfCheck time.Duration
	// ForwardTimeout bounds one attempt to an upstream.
	ForwardTimeout time.Duration
	// MaxForwards bounds the forwarded queries in flight; beyond it queries
	// get SERVFAIL at once instead of piling up goroutines.
	MaxForwards int
	// UpstreamBackoff and UpstreamBackoffMax: an upstream that is down is
	// skipped (queries fail fast) for UpstreamBackoff, doubled on each
	// further failure up to UpstreamBackoffMax; then one query probes it
	// again.
	UpstreamBackoff    time.Duration
	UpstreamBackoffMax time.Duration
	// An upstream is down when it refuses or cannot be reached (offline),
	// or when UpstreamDownAfter different names got no answer from it
	// within UpstreamFailWindow, with no answer in between. One name that
	// times out (its servers are down, or a client asks for it on purpose)
	// must not make every other name fail.
	UpstreamDownAfter  int
	UpstreamFailWindow time.Duration
	// TTL of the answers for mesh names, and of negative answers (the SOA's
	// minimum). Short: services appear and sites may be renumbered.
	TTL         time.Duration
	NegativeTTL time.Duration
}

// DefaultConfig returns the configuration a booture runs with.
func DefaultConfig() Config {
	return Config{
		Domain:             catalog.DefaultDomain,
		MaxBodyBytes:       64 << 20,
		DialTimeout:        5 * time.Second,
		ResponseTimeout:    2 * time.Minute,
		ReadHeaderTimeout:  10 * time.Second,
		IdleTimeout:        2 * time.Minute,
		ShutdownTimeout:    5 * time.Second,
		FreeBind:           true,
		ResolvConf:         "/etc/resolv.conf",
		ResolvedConf:       "/run/systemd/resolve/resolv.conf",
		ResolvConfCheck:    10 * time.Second,
		ForwardTimeout:     2 * time.Second,
		MaxForwards:        128,
		UpstreamBackoff:    time.Second,
		UpstreamBackoffMax: 30 * time.Second,
		UpstreamDownAfter:  3,
		UpstreamFailWindow: time.Minute,
		DNSClientRate:      50,
		DNSClientBurst:     200,
		DNSClients:         4096,
		TTL:                60 * time.Second,
		NegativeTTL:        10 * time.Second,
	}
}

// Validate reports every invalid field of c.
func (c Config) Validate() error {
	var errs []error
	if err := checkDomain(c.Domain); err != nil {
		errs = append(errs, fmt.Errorf("domain: %w", err))
	}
	if c.MaxBodyBytes <= 0 {
		errs = append(errs, fmt.Errorf("max body bytes %d: must be positive", c.MaxBodyBytes))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"dial timeout", c.DialTimeout},
		{"response timeout", c.ResponseTimeout},
		{"read header timeout", c.ReadHeaderTimeout},
		{"idle timeout", c.IdleTimeout},
		{"shutdown timeout", c.ShutdownTimeout},
		{"resolv.conf check", c.ResolvConfCheck},
		{"forward timeout", c.ForwardTimeout},
		{"upstream backoff", c.UpstreamBackoff},
		{"upstream backoff max", c.UpstreamBackoffMax},
		{"upstream fail window", c.UpstreamFailWindow},
		{"ttl", c.TTL},
		{"negative ttl", c.NegativeTTL},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s %v: must be positive", d.name, d.v))
		}
	}
	if c.UpstreamBackoffMax < c.UpstreamBackoff {
		errs = append(errs, fmt.Errorf("upstream backoff max %v: less than upstream backoff %v", c.UpstreamBackoffMax, c.UpstreamBackoff))
	}
	if c.TTL > 24*time.Hour || c.NegativeTTL > 24*time.Hour {
		errs = append(errs, errors.New("ttl and negative ttl: at most 24h"))
	}
	if !(c.DNSClientRate > 0) || c.DNSClientBurst <= 0 || c.DNSClients <= 0 {
		errs = append(errs, fmt.Errorf("dns client rate %v, burst %d, clients %d: must be positive", c.DNSClientRate, c.DNSClientBurst, c.DNSClients))
	}
	if c.MeshInterface != "" && (len(c.MeshInterface) > 15 || strings.ContainsAny(c.MeshInterface, "/ \t\n")) {
		errs = append(errs, fmt.Errorf("mesh interface %q: not an interface name", c.MeshInterface))
	}
	if c.UpstreamDownAfter <= 0 {
		errs = append(errs, fmt.Errorf("upstream down after %d names: must be positive", c.UpstreamDownAfter))
	}
	if c.MaxForwards <= 0 {
		errs = append(errs, fmt.Errorf("max forwards %d: must be positive", c.MaxForwards))
	}
	for _, u := range c.Upstreams {
		if !u.IsValid() || !u.Addr().IsValid() || u.Addr().IsUnspecified() || u.Port() == 0 {
			errs = append(errs, fmt.Errorf("upstream %q: want a unicast address and a port", u))
		}
	}
	return errors.Join(errs...)
}

// checkDomain accepts a DNS name of one or more labels that names.Check
// accepts, without trailing dot.
func checkDomain(d string) error {
	if d == "" {
		return errors.New("empty")
	}
	if len(d) > 200 {
		// Leave room for SERVICE.BOOTURE. within DNS's 253 characters.
		return fmt.Errorf("%.20q...: longer than 200 characters", d)
	}
	for l := range strings.SplitSeq(d, ".") {
		if err := names.Check(l); err != nil {
			return fmt.Errorf("%q: %w", d, err)
		}
	}
	return nil
}
