package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Member is a namespace on the lab's LAN with a real WireGuard client:
// Debian's wg-quick with the userspace wireguard-go, brought up from the
// configuration `booture member add` printed, unchanged.
//
// wg-quick hands the configuration's DNS= servers to resolvconf(8), which
// this machine does not have (and which would rewrite the host's
// /etc/resolv.conf): the lab puts a small resolvconf stand-in first on
// wg-quick's PATH that writes them to /etc/netns/NS/resolv.conf, the file
// `ip netns exec` mounts over /etc/resolv.conf for the namespace's
// processes. The host's /etc/resolv.conf is never touched.
type Member struct {
	NS
	// Name is m1, m2, ...
	Name string
	// IP is the member's LAN address, 198.51.100.(100+i).
	IP netip.Addr
	// Iface is the WireGuard interface wg-quick makes: the configuration
	// file is ConfPath, Iface + ".conf" (wg-quick names the interface after
	// the file).
	Iface    string
	ConfPath string
	// ResolvPath is the namespace's resolv.conf (/etc/netns/NS/resolv.conf).
	ResolvPath string

	mu     sync.Mutex
	config string
	up     bool
}

// resolvconfShim is the resolvconf stand-in on wg-quick's PATH.
const resolvconfShim = `#!/bin/sh
# booture lab: resolvconf stand-in for wg-quick in a member namespace. It
# writes the nameservers of "resolvconf -a IFACE" to the namespace's own
# resolv.conf, never to the host's /etc/resolv.conf.
f="${BOOTURE_LAB_RESOLV:?BOOTURE_LAB_RESOLV is not set}"
case "$1" in
-a) { echo "# set by wg-quick for $2 (booture lab resolvconf shim)"; cat; } > "$f" ;;
-d) echo "# cleared by wg-quick for $2 (booture lab resolvconf shim)" > "$f" ;;
-l) cat "$f" ;;
esac
exit 0
`

// AddMember makes a member namespace attached to the LAN. Its WireGuard
// client is down until Up.
func (l *Lab) AddMember() (*Member, error) {
	l.mu.Lock()
	i := len(l.members) + 1
	l.mu.Unlock()
	if i > 99 {
		return nil, fmt.Errorf("lab: at most 99 members")
	}
	name := fmt.Sprintf("m%d", i)
	ns, err := l.addNS(l.prefix() + name)
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(l.Dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(bin, "resolvconf"), []byte(resolvconfShim), 0o755); err != nil {
		return nil, err
	}
	m := &Member{
		NS:         *ns,
		Name:       name,
		IP:         hostAddr(LANPrefix, 100+i),
		Iface:      fmt.Sprintf("%sc%d", l.prefix(), i),
		ResolvPath: filepath.Join("/etc/netns", ns.Name, "resolv.conf"),
	}
	m.ConfPath = filepath.Join(l.Dir, m.Iface+".conf")
	l.mu.Lock()
	l.members = append(l.members, m)
	l.mu.Unlock()
	// The resolver file must exist before the first ip netns exec, which
	// then mounts it over /etc/resolv.conf.
	if err := writeResolv(m.ResolvPath, "# booture lab: resolver of "+ns.Name+" (none until wg-quick sets one)\n"); err != nil {
		return nil, err
	}
	m.env = []string{
		"PATH=" + bin + ":" + os.Getenv("PATH"),
		"WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go",
		"BOOTURE_LAB_RESOLV=" + m.ResolvPath,
	}
	if err := l.attach(&m.NS, name, m.IP); err != nil {
		return nil, err
	}
	return m, nil
}

// Up writes config, exactly as given, to ConfPath (mode 0600) and brings
// the client up with `wg-quick up ConfPath` (userspace wireguard-go).
func (m *Member) Up(config string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.up {
		return fmt.Errorf("%s: already up", m.Name)
	}
	if err := os.WriteFile(m.ConfPath, []byte(config), 0o600); err != nil {
		return err
	}
	m.config = config
	r := m.Run("wg-quick", "up", m.ConfPath)
	if err := r.Error(); err != nil {
		return fmt.Errorf("%s: %w", m.Name, err)
	}
	m.up = true
	return nil
}

// Down runs `wg-quick down ConfPath`.
func (m *Member) Down() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.up {
		return nil
	}
	m.up = false
	return m.Run("wg-quick", "down", m.ConfPath).Error()
}

// Config returns the configuration the client was brought up with.
func (m *Member) Config() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.config
}

// SetPrivateKey gives the interface its private key with `wg set IFACE
// private-key FILE`, for a configuration made with --pubkey (it has no
// PrivateKey line: the member keeps its key).
func (m *Member) SetPrivateKey(key string) error {
	f := filepath.Join(filepath.Dir(m.ConfPath), m.Iface+".key")
	if err := os.WriteFile(f, []byte(strings.TrimSpace(key)+"\n"), 0o600); err != nil {
		return err
	}
	return m.Run("wg", "set", m.Iface, "private-key", f).Error()
}

// WG is `wg show IFACE dump` of the client.
func (m *Member) WG() (WGDevice, error) { return m.WGShow(m.Iface) }

// ResolvConf returns the namespace's resolv.conf.
func (m *Member) ResolvConf() (string, error) {
	b, err := os.ReadFile(m.ResolvPath)
	return string(b), err
}

// writeResolv writes a namespace's resolv.conf, creating /etc/netns/NS
// (tried twice: another lab may remove /etc/netns when it empties it).
func writeResolv(path, content string) error {
	var err error
	for range 2 {
		if err = os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
			if err = os.WriteFile(path, []byte(content), 0o644); err == nil {
				return nil
			}
		}
	}
	return err
}

// removeResolv removes /etc/netns/NS, and /etc/netns when it is left empty.
func (m *Member) removeResolv() {
	dir := filepath.Dir(m.ResolvPath)
	os.RemoveAll(dir)
	os.Remove(filepath.Dir(dir)) // fails unless empty
}

// GenKey returns a new WireGuard key pair made with `wg genkey | wg pubkey`.
func GenKey() (priv, pub string, err error) {
	r := run(context.Background(), 0, nil, "wg", "genkey")
	if err := r.Error(); err != nil {
		return "", "", err
	}
	priv = strings.TrimSpace(r.Stdout)
	r = runStdin(priv+"\n", "wg", "pubkey")
	if err := r.Error(); err != nil {
		return "", "", err
	}
	return priv, strings.TrimSpace(r.Stdout), nil
}
