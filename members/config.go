package members

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/booture/booture/key"
)

// DefaultKeepalive is the PersistentKeepalive, in seconds, of member
// configurations: it keeps NAT mappings of phones and home routers open so
// the booture can reach the member.
const DefaultKeepalive = 25

// Server is the booture as its members see it.
type Server struct {
	// Name of the booture, for the comment line (optional).
	Name string
	// PublicKey of the booture's WireGuard interface.
	PublicKey key.PublicKey
	// Endpoint where members reach the booture: "HOST:PORT", where HOST is
	// an IP address (IPv6 in brackets) or a DNS name.
	Endpoint string
	// Site of the booture: its host 1 addresses are the members' DNS.
	Site Site
	// MeshIPv4 and MeshIPv6 are the mesh pool (10.77.0.0/16 and the mesh's
	// ULA /48): what a split-tunnel member routes to the booture.
	MeshIPv4, MeshIPv6 netip.Prefix
	// PersistentKeepalive in seconds; 0 means DefaultKeepalive.
	PersistentKeepalive int
	// Domain is the mesh's DNS domain (booture.internal), given to members
	// as a search domain so that "cloud.diois" resolves (optional).
	Domain string
}

// ClientConfig is the content of a member's WireGuard configuration, in the
// wg-quick format that the WireGuard apps import.
type ClientConfig struct {
	// Comment is written as a "# ..." line at the top (optional, one line
	// of printable ASCII).
	Comment string
	// PrivateKey of the member, when the booture generated it. Nil when the
	// member keeps its own private key: the PrivateKey line is then a
	// comment telling the member to put its own key there.
	PrivateKey *key.PrivateKey
	// PublicKey of the member (optional): shown in that comment, and checked
	// against PrivateKey when both are set.
	PublicKey key.PublicKey
	// Addresses of the member's interface (10.77.S.N/32, PREFIX::N/128).
	Addresses []netip.Prefix
	// DNS servers (the booture's own addresses).
	DNS []netip.Addr
	// SearchDomains follow the servers on the DNS line: wg-quick and the
	// WireGuard apps take a name there as a search domain.
	SearchDomains []string
	// PeerPublicKey is the booture's public key.
	PeerPublicKey key.PublicKey
	// Endpoint of the booture, "HOST:PORT".
	Endpoint string
	// AllowedIPs routed to the booture: the mesh pool, or 0.0.0.0/0 and
	// ::/0 for a full tunnel.
	AllowedIPs []netip.Prefix
	// PersistentKeepalive in seconds, 0 to omit the line.
	PersistentKeepalive int
}

// ConfigFor returns the configuration of member m served by srv.
// privateKey is the key Add returned, or nil when the member has its own.
func ConfigFor(m Member, privateKey *key.PrivateKey, srv Server) ClientConfig {
	dns4, dns6 := srv.Site.Booture()
	allowed := []netip.Prefix{srv.MeshIPv4, srv.MeshIPv6}
	if m.FullTunnel {
		allowed = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	}
	keepalive := srv.PersistentKeepalive
	if keepalive == 0 {
		keepalive = DefaultKeepalive
	}
	comment := "booture member " + m.Name
	if srv.Name != "" {
		comment += " of " + srv.Name
	}
	return ClientConfig{
		Comment:             comment,
		PrivateKey:          privateKey,
		PublicKey:           m.PublicKey,
		Addresses:           []netip.Prefix{netip.PrefixFrom(m.IPv4, 32), netip.PrefixFrom(m.IPv6, 128)},
		DNS:                 []netip.Addr{dns4, dns6},
		SearchDomains:       searchDomains(srv.Domain),
		PeerPublicKey:       srv.PublicKey,
		Endpoint:            srv.Endpoint,
		AllowedIPs:          allowed,
		PersistentKeepalive: keepalive,
	}
}

// Validate checks that c renders to a configuration wg-quick and the
// WireGuard apps accept. Errors wrap ErrInvalidConfig.
func (c ClientConfig) Validate() error {
	_, err := c.check()
	return err
}

// check validates c and returns its endpoint in canonical form.
func (c ClientConfig) check() (string, error) {
	bad := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	for i := 0; i < len(c.Comment); i++ {
		if c.Comment[i] < ' ' || c.Comment[i] > '~' {
			return bad("comment %.80q: only printable ASCII is allowed", c.Comment)
		}
	}
	if c.PrivateKey != nil {
		if c.PrivateKey.IsZero() {
			return bad("private key is all zeros")
		}
		if !c.PublicKey.IsZero() && c.PrivateKey.Public() != c.PublicKey {
			return bad("private key does not match public key %s", c.PublicKey)
		}
	}
	if len(c.Addresses) == 0 {
		return bad("no address")
	}
	for _, p := range c.Addresses {
		if !p.IsValid() || p.Addr().Zone() != "" {
			return bad("invalid address %q", p.String())
		}
	}
	for _, a := range c.DNS {
		if !a.IsValid() || a.Zone() != "" {
			return bad("invalid DNS server %q", a.String())
		}
	}
	for _, d := range c.SearchDomains {
		if _, err := netip.ParseAddr(d); err == nil || !isHostname(d) {
			return bad("search domain %.80q is not a DNS name", d)
		}
	}
	if c.PeerPublicKey.IsZero() {
		return bad("no booture public key")
	}
	ep, err := canonicalEndpoint(c.Endpoint)
	if err != nil {
		return bad("%v", err)
	}
	if len(c.AllowedIPs) == 0 {
		return bad("no AllowedIPs")
	}
	for _, p := range c.AllowedIPs {
		if !p.IsValid() || p.Addr().Zone() != "" || p.Masked() != p {
			return bad("invalid AllowedIPs prefix %q", p.String())
		}
	}
	if c.PersistentKeepalive < 0 || c.PersistentKeepalive > 65535 {
		return bad("PersistentKeepalive %d not in 0..65535", c.PersistentKeepalive)
	}
	return ep, nil
}

// canonicalEndpoint checks "HOST:PORT" and returns it with an IPv6 host in
// brackets and the port without leading zeros.
func canonicalEndpoint(ep string) (string, error) {
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		return "", fmt.Errorf("endpoint %.80q: want HOST:PORT, with an IPv6 address in brackets", ep)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return "", fmt.Errorf("endpoint %.80q: port %.10q is not in 1..65535", ep, port)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return "", fmt.Errorf("endpoint %.80q: a zoned address means nothing on the member's device", ep)
		}
		return net.JoinHostPort(a.Unmap().String(), strconv.FormatUint(p, 10)), nil
	}
	if !isHostname(host) {
		return "", fmt.Errorf("endpoint %.80q: %.80q is neither an IP address nor a DNS name", ep, host)
	}
	return net.JoinHostPort(host, strconv.FormatUint(p, 10)), nil
}

// isHostname reports whether h is a DNS name of letters, digits, '-' and
// dots (a trailing dot allowed).
func isHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// Render returns c in the wg-quick format, which wg-quick(8) and the
// WireGuard apps (Android, iOS, macOS, Windows, Linux) import unchanged:
//
//	# booture member alice of diois
//	[Interface]
//	PrivateKey = ...
//	Address = 10.77.3.2/32, fd12:3456:789a:3::2/128
//	DNS = 10.77.3.1, fd12:3456:789a:3::1, booture.internal
//
//	[Peer]
//	PublicKey = ...
//	Endpoint = 198.51.100.1:51820
//	AllowedIPs = 10.77.0.0/16, fd12:3456:789a::/48
//	PersistentKeepalive = 25
//
// The text contains the member's private key when c has one: show it to the
// member, never log it.
func Render(c ClientConfig) (string, error) {
	ep, err := c.check()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if c.Comment != "" {
		fmt.Fprintf(&b, "# %s\n", c.Comment)
	}
	b.WriteString("[Interface]\n")
	switch {
	case c.PrivateKey != nil:
		fmt.Fprintf(&b, "PrivateKey = %s\n", c.PrivateKey.RevealBase64())
	case !c.PublicKey.IsZero():
		fmt.Fprintf(&b, "# PrivateKey = (your own private key, whose public key is %s)\n", c.PublicKey)
	default:
		b.WriteString("# PrivateKey = (your own private key)\n")
	}
	fmt.Fprintf(&b, "Address = %s\n", joinPrefixes(c.Addresses))
	if len(c.DNS) > 0 {
		dns := make([]string, 0, len(c.DNS)+len(c.SearchDomains))
		for _, a := range c.DNS {
			dns = append(dns, a.String())
		}
		dns = append(dns, c.SearchDomains...)
		fmt.Fprintf(&b, "DNS = %s\n", strings.Join(dns, ", "))
	}
	b.WriteString("\n[Peer]\n")
	fmt.Fprintf(&b, "PublicKey = %s\n", c.PeerPublicKey)
	fmt.Fprintf(&b, "Endpoint = %s\n", ep)
	fmt.Fprintf(&b, "AllowedIPs = %s\n", joinPrefixes(c.AllowedIPs))
	if c.PersistentKeepalive > 0 {
		fmt.Fprintf(&b, "PersistentKeepalive = %d\n", c.PersistentKeepalive)
	}
	return b.String(), nil
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

func searchDomains(domain string) []string {
	domain = strings.TrimSuffix(domain, ".")
	if domain == "" {
		return nil
	}
	return []string{domain}
}
