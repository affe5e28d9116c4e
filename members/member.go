package members

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/booture/booture/internal/names"
	"github.com/booture/booture/key"
)

// Member is one VPN member of a booture. It is a value: changing a copy does
// not change the registry.
type Member struct {
	Name       string        // DNS label, unique in the registry
	PublicKey  key.PublicKey // unique among members and bootures
	IPv4       netip.Addr    // 10.77.S.N
	IPv6       netip.Addr    // SITE::N, same N as IPv4
	FullTunnel bool          // all traffic through the booture, not only the mesh
	Disabled   bool          // a disabled member keeps its addresses but gets no peer
	Created    time.Time     // when the member was added (UTC, to the second)
	// Issued is what the member's configuration was made with, when
	// known (members added by a booture older than the field have none).
	Issued Issue
}

// Issue records the booture's endpoint and site a member's configuration
// was made with: when either changed since, the member holds an outdated
// configuration (status warns; member reissue gives a new one).
type Issue struct {
	Endpoint string       // "HOST:PORT" written as Endpoint
	Site     netip.Prefix // the booture's IPv4 site then
}

// Outdated reports whether a configuration issued with i no longer works
// for a booture at endpoint with site: false when i is unknown.
func (i Issue) Outdated(endpoint string, site netip.Prefix) bool {
	if i.Endpoint == "" {
		return false
	}
	return i.Endpoint != endpoint || (i.Site.IsValid() && i.Site != site)
}

// Host returns the member's host number N (2 to 254) in its site.
func (m Member) Host() int {
	if !m.IPv4.Is4() {
		return 0
	}
	return int(m.IPv4.As4()[3])
}

// Enabled reports whether the member may connect.
func (m Member) Enabled() bool { return !m.Disabled }

// CheckName returns nil if name is a valid member name (a DNS label: 1 to 63
// characters among a-z, 0-9 and '-', not starting or ending with '-'), else
// an error wrapping ErrInvalidName that says what is wrong.
func CheckName(name string) error { return names.Check(name) }

// ParsePublicKey parses a WireGuard public key as printed by `wg pubkey` and
// the WireGuard apps: 32 bytes in standard base64 (44 characters ending in
// '='). Spaces and line breaks around the key are ignored. The all-zero key
// is refused: it is no one's key. The error wraps ErrInvalidKey.
func ParsePublicKey(s string) (key.PublicKey, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return key.PublicKey{}, fmt.Errorf("empty public key: %w", ErrInvalidKey)
	}
	// key.ParsePublicKey uses base64.StdEncoding, which skips line breaks
	// anywhere in the text; a key is one word, so refuse them up front.
	if strings.ContainsAny(t, "\r\n \t") || len(t) != 44 {
		return key.PublicKey{}, fmt.Errorf("public key %.60q: %w (want 44 characters, as printed by wg pubkey)", t, ErrInvalidKey)
	}
	k, err := key.ParsePublicKey(t)
	if err != nil {
		return key.PublicKey{}, fmt.Errorf("public key %.60q: %w (want 44 characters, as printed by wg pubkey)", t, ErrInvalidKey)
	}
	if k.IsZero() {
		return key.PublicKey{}, fmt.Errorf("public key %q: %w (it is all zeros)", t, ErrInvalidKey)
	}
	return k, nil
}
