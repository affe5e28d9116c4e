// Package config is the daemon's typed configuration: defaults, the TOML
// config file (strict: an unknown key is an error that names it), the
// command-line flags (a flag wins over the file), and validation with
// one-line errors.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/booture/booture/catalog"
	"github.com/booture/booture/internal/names"
)

// DefaultConfigFile is read when --config is not given, if it exists.
const DefaultConfigFile = "/etc/booture/booture.toml"

// Config is the daemon's configuration. Field names in TOML are the flag
// names with '_' for '-'.
type Config struct {
	// Name is this booture's name (a DNS label); default: the host name.
	Name string `toml:"name"`
	// StateDir holds keys, mesh state, members and plugin pins.
	StateDir string `toml:"state_dir"`
	// Socket is the admin API's unix socket.
	Socket string `toml:"socket"`
	// SocketGroup, if set, is the group allowed to use the socket (mode
	// 0660); otherwise only root can (0600).
	SocketGroup string `toml:"socket_group"`
	// Interface is the WireGuard interface name.
	Interface string `toml:"interface"`
	// Listen is the underlay IP gossip binds to; empty means all.
	Listen string `toml:"listen"`
	// Advertise is HOST[:PORT] other bootures and members use to reach
	// this one; the port, if given, is the WireGuard port members use
	// (a port forwarded on a router). Empty: detected.
	Advertise string `toml:"advertise"`
	// WGPort is the WireGuard UDP port.
	WGPort int `toml:"wg_port"`
	// GossipPort is the gossip TCP and UDP port.
	GossipPort int `toml:"gossip_port"`
	// MTU of the WireGuard interface; 0 means the underlay's minus 80.
	MTU int `toml:"mtu"`
	// WireGuardMode is auto, kernel or userspace.
	WireGuardMode string `toml:"wireguard_mode"`
	// GossipProfile is lan or wan.
	GossipProfile string `toml:"gossip_profile"`
	// Metrics is the listen address of the Prometheus endpoint; empty
	// means off.
	Metrics string `toml:"metrics"`
	// Resync is how often the network state is re-applied to repair
	// changes made by hand.
	Resync time.Duration `toml:"resync"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`
	// LogFormat is text or json.
	LogFormat string `toml:"log_format"`
	// AllowMemberToMember lets VPN members reach each other.
	AllowMemberToMember bool `toml:"allow_member_to_member"`
	// Uplink is the interface full-tunnel members' traffic leaves by;
	// empty means the default route's.
	Uplink string `toml:"uplink"`
	// Domain is the DNS domain of the mesh's names.
	Domain string `toml:"domain"`
	// HTTPPort is the port of the gateway (reverse proxy and portal) on the
	// mesh addresses, and on the LAN for public services.
	HTTPPort int `toml:"http_port"`
	// DNSPort is the port of the DNS server on the mesh addresses.
	DNSPort int `toml:"dns_port"`
	// LANHTTP is "auto" (serve public services on the LAN address while
	// there are any) or "off".
	LANHTTP string `toml:"lan_http"`
	// PluginDirs are searched for booture-plugin-* binaries, after the
	// managed directory STATE_DIR/plugins.
	PluginDirs []string `toml:"plugin_dirs"`
	// DNSUpstreams are resolvers for names outside the mesh; empty means
	// those of /etc/resolv.conf.
	DNSUpstreams []string `toml:"dns_upstreams"`
	// Services declared on this booture.
	Services []catalog.Spec `toml:"service"`
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	host, _ := os.Hostname()
	return Config{
		Name:          SanitizeName(host),
		StateDir:      "/var/lib/booture",
		Socket:        "/run/booture/bootured.sock",
		Interface:     "booture0",
		WGPort:        51820,
		GossipPort:    7946,
		WireGuardMode: "auto",
		GossipProfile: "lan",
		Resync:        10 * time.Second,
		LogLevel:      "info",
		LogFormat:     "text",
		Domain:        catalog.DefaultDomain,
		HTTPPort:      80,
		DNSPort:       53,
		LANHTTP:       "auto",
	}
}

// SanitizeName turns a host name into a valid booture name when it can
// (lower case, first label, invalid characters replaced by '-').
func SanitizeName(host string) string {
	host, _, _ = strings.Cut(strings.ToLower(host), ".")
	b := []byte(host)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	s := strings.Trim(string(b), "-")
	if len(s) > names.MaxLen {
		s = strings.Trim(s[:names.MaxLen], "-")
	}
	return s
}

// Decode reads TOML from r into c, rejecting unknown keys.
func (c *Config) Decode(r io.Reader, source string) error {
	md, err := toml.NewDecoder(r).Decode(c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return fmt.Errorf("%s: line %d: %s", source, perr.Position.Line, perr.Message)
		}
		return fmt.Errorf("%s: %w", source, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("%s: unknown key %s", source, strings.Join(keys, ", "))
	}
	return nil
}

// Load builds the configuration from defaults, the config file and the
// command-line arguments (flags win). It returns flag.ErrHelp for -h.
func Load(args []string, stderr io.Writer) (Config, error) {
	cfg := Default()
	fs := flag.NewFlagSet("bootured", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var file string
	fs.StringVar(&file, "config", "", "config file (TOML); default "+DefaultConfigFile+" if it exists")
	flagCfg := cfg
	bindFlags(fs, &flagCfg)
	fs.Usage = func() { usage(fs, stderr) }
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q (see bootured --help)", fs.Arg(0))
	}
	if file == "" {
		if _, err := os.Stat(DefaultConfigFile); err == nil {
			file = DefaultConfigFile
		}
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return cfg, fmt.Errorf("reading config: %w", err)
		}
		if err := cfg.Decode(bytes.NewReader(b), file); err != nil {
			return cfg, err
		}
	}
	// Flags given on the command line win over the file.
	fs.Visit(func(f *flag.Flag) { copyFlag(&cfg, &flagCfg, f.Name) })
	return cfg, cfg.Validate()
}

// flagFields binds each flag to its field, so that Load can copy the ones
// given on the command line.
var flagFields = map[string]func(dst, src *Config){
	"name":                   func(d, s *Config) { d.Name = s.Name },
	"state-dir":              func(d, s *Config) { d.StateDir = s.StateDir },
	"socket":                 func(d, s *Config) { d.Socket = s.Socket },
	"socket-group":           func(d, s *Config) { d.SocketGroup = s.SocketGroup },
	"interface":              func(d, s *Config) { d.Interface = s.Interface },
	"listen":                 func(d, s *Config) { d.Listen = s.Listen },
	"advertise":              func(d, s *Config) { d.Advertise = s.Advertise },
	"wg-port":                func(d, s *Config) { d.WGPort = s.WGPort },
	"gossip-port":            func(d, s *Config) { d.GossipPort = s.GossipPort },
	"mtu":                    func(d, s *Config) { d.MTU = s.MTU },
	"wireguard-mode":         func(d, s *Config) { d.WireGuardMode = s.WireGuardMode },
	"gossip-profile":         func(d, s *Config) { d.GossipProfile = s.GossipProfile },
	"metrics":                func(d, s *Config) { d.Metrics = s.Metrics },
	"resync":                 func(d, s *Config) { d.Resync = s.Resync },
	"log-level":              func(d, s *Config) { d.LogLevel = s.LogLevel },
	"log-format":             func(d, s *Config) { d.LogFormat = s.LogFormat },
	"allow-member-to-member": func(d, s *Config) { d.AllowMemberToMember = s.AllowMemberToMember },
	"uplink":                 func(d, s *Config) { d.Uplink = s.Uplink },
	"domain":                 func(d, s *Config) { d.Domain = s.Domain },
	"http-port":              func(d, s *Config) { d.HTTPPort = s.HTTPPort },
	"dns-port":               func(d, s *Config) { d.DNSPort = s.DNSPort },
	"lan-http":               func(d, s *Config) { d.LANHTTP = s.LANHTTP },
	"plugin-dir":             func(d, s *Config) { d.PluginDirs = s.PluginDirs },
}

func copyFlag(dst, src *Config, name string) {
	if f, ok := flagFields[name]; ok {
		f(dst, src)
	}
}

func bindFlags(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.Name, "name", c.Name, "this booture's name: a-z, 0-9 and '-' (default: the host name)")
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "directory for keys, mesh state, members and plugin pins")
	fs.StringVar(&c.Socket, "socket", c.Socket, "admin API unix socket")
	fs.StringVar(&c.SocketGroup, "socket-group", c.SocketGroup, "group allowed to use the admin socket (default: root only)")
	fs.StringVar(&c.Interface, "interface", c.Interface, "WireGuard interface name")
	fs.StringVar(&c.Listen, "listen", c.Listen, "underlay IP to bind gossip to (default: all)")
	fs.StringVar(&c.Advertise, "advertise", c.Advertise, "HOST[:PORT] other bootures and members use to reach this one (default: detected)")
	fs.IntVar(&c.WGPort, "wg-port", c.WGPort, "WireGuard UDP port")
	fs.IntVar(&c.GossipPort, "gossip-port", c.GossipPort, "gossip TCP and UDP port")
	fs.IntVar(&c.MTU, "mtu", c.MTU, "WireGuard MTU (default: underlay MTU minus 80)")
	fs.StringVar(&c.WireGuardMode, "wireguard-mode", c.WireGuardMode, "auto, kernel or userspace (embedded wireguard-go)")
	fs.StringVar(&c.GossipProfile, "gossip-profile", c.GossipProfile, "gossip timings: lan (fast failure detection) or wan")
	fs.StringVar(&c.Metrics, "metrics", c.Metrics, "listen address of the Prometheus metrics endpoint, e.g. 127.0.0.1:9477 (default: off)")
	fs.DurationVar(&c.Resync, "resync", c.Resync, "how often the network state is re-applied to repair manual changes")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json")
	fs.BoolVar(&c.AllowMemberToMember, "allow-member-to-member", c.AllowMemberToMember, "let VPN members reach each other")
	fs.StringVar(&c.Uplink, "uplink", c.Uplink, "interface full-tunnel traffic leaves by (default: the default route's)")
	fs.StringVar(&c.Domain, "domain", c.Domain, "DNS domain of the mesh's names")
	fs.IntVar(&c.HTTPPort, "http-port", c.HTTPPort, "port of the gateway (services and portal) on the mesh addresses")
	fs.IntVar(&c.DNSPort, "dns-port", c.DNSPort, "port of the DNS server on the mesh addresses")
	fs.StringVar(&c.LANHTTP, "lan-http", c.LANHTTP, "auto: serve public services on the LAN address too; off: never")
	fs.Var((*stringList)(&c.PluginDirs), "plugin-dir", "extra directory searched for booture-plugin-* binaries (repeatable)")
}

type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

func usage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, `bootured: the booture daemon. It links this box into a WireGuard mesh with
other bootures (gossip, no central server), gives members VPN access, and
serves the declared services through plugins. It needs root (or
CAP_NET_ADMIN). Manage it with the booture command.

Usage: bootured [flags]

Every flag can also be set in the config file (TOML, key = flag name with
'_' for '-'); a flag given on the command line wins.

Flags:
`)
	fs.PrintDefaults()
}

// Validate checks every setting and returns the first problem as a
// one-line error.
func (c *Config) Validate() error {
	if err := names.Check(c.Name); err != nil {
		return fmt.Errorf("name: %w (set --name)", err)
	}
	if c.StateDir == "" {
		return errors.New("state_dir: empty")
	}
	if c.Socket == "" {
		return errors.New("socket: empty")
	}
	if len(c.Socket) > 107 {
		return fmt.Errorf("socket: path longer than 107 bytes: %s", c.Socket)
	}
	if c.Interface == "" || len(c.Interface) > 15 || strings.ContainsAny(c.Interface, "/ \t") {
		return fmt.Errorf("interface: %q is not a valid interface name (1 to 15 characters, no '/' or spaces)", c.Interface)
	}
	if c.Listen != "" {
		if _, err := netip.ParseAddr(c.Listen); err != nil {
			return fmt.Errorf("listen: %q is not an IP address", c.Listen)
		}
	}
	if c.Advertise != "" {
		if _, err := c.AdvertiseHostPort(); err != nil {
			return err
		}
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"wg_port", c.WGPort}, {"gossip_port", c.GossipPort}, {"http_port", c.HTTPPort}, {"dns_port", c.DNSPort}} {
		if p.v < 1 || p.v > 65535 {
			return fmt.Errorf("%s: %d is not a port number (1-65535)", p.name, p.v)
		}
	}
	if c.MTU != 0 && (c.MTU < 1280 || c.MTU > 9000) {
		return fmt.Errorf("mtu: %d out of range (1280-9000, or 0 for automatic)", c.MTU)
	}
	if c.LANHTTP != "auto" && c.LANHTTP != "off" {
		return fmt.Errorf("lan_http: %q: want auto or off", c.LANHTTP)
	}
	switch c.WireGuardMode {
	case "auto", "kernel", "userspace":
	default:
		return fmt.Errorf("wireguard_mode: %q: want auto, kernel or userspace", c.WireGuardMode)
	}
	switch c.GossipProfile {
	case "lan", "wan":
	default:
		return fmt.Errorf("gossip_profile: %q: want lan or wan", c.GossipProfile)
	}
	if c.Resync < time.Second {
		return fmt.Errorf("resync: %v is too short (at least 1s)", c.Resync)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level: %q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("log_format: %q: want text or json", c.LogFormat)
	}
	if c.Metrics != "" {
		if _, err := netip.ParseAddrPort(c.Metrics); err != nil {
			return fmt.Errorf("metrics: %q is not IP:PORT", c.Metrics)
		}
	}
	if c.Domain == "" || strings.HasSuffix(c.Domain, ".") {
		return fmt.Errorf("domain: %q is not a domain (no trailing dot)", c.Domain)
	}
	for _, label := range strings.Split(c.Domain, ".") {
		if err := names.Check(label); err != nil {
			return fmt.Errorf("domain: %w", err)
		}
	}
	for _, u := range c.DNSUpstreams {
		if _, err := netip.ParseAddrPort(u); err != nil {
			if _, err := netip.ParseAddr(u); err != nil {
				return fmt.Errorf("dns_upstreams: %q is not IP or IP:PORT", u)
			}
		}
	}
	seen := map[string]bool{}
	for i, s := range c.Services {
		if err := names.Check(s.Plugin); err != nil {
			return fmt.Errorf("service %d: plugin: %w", i+1, err)
		}
		name := s.Name
		if name == "" {
			name = s.Plugin
		}
		if err := names.Check(name); err != nil {
			return fmt.Errorf("service %d: name: %w", i+1, err)
		}
		if seen[name] {
			return fmt.Errorf("service %d: the name %q is declared twice (set name = \"...\" to tell them apart)", i+1, name)
		}
		seen[name] = true
		if s.Access != "" {
			if _, err := catalog.ParseAccess(string(s.Access)); err != nil {
				return fmt.Errorf("service %q: %w", name, err)
			}
		}
	}
	return nil
}

// Advertised is the parsed form of Advertise.
type Advertised struct {
	// IP is set when the host is an IP address; Host is always set.
	IP   netip.Addr
	Host string
	// Port is the WireGuard port members use; 0 when not given.
	Port int
}

// AdvertiseHostPort parses Advertise (HOST, HOST:PORT, IPv6 in brackets).
// A host name is allowed for members' endpoint (e.g. a dynamic DNS name
// for members outside the LAN); gossip then advertises the listen or
// detected IP.
func (c *Config) AdvertiseHostPort() (Advertised, error) {
	s := c.Advertise
	var a Advertised
	if host, port, err := net.SplitHostPort(s); err == nil {
		p, perr := strconv.Atoi(port)
		if perr != nil || p < 1 || p > 65535 {
			return a, fmt.Errorf("advertise: bad port in %q", s)
		}
		s, a.Port = host, p
	}
	s = strings.Trim(s, "[]")
	if ip, err := netip.ParseAddr(s); err == nil {
		a.IP, a.Host = ip.Unmap(), ip.Unmap().String()
		return a, nil
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || strings.ContainsFunc(label, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-')
		}) {
			return a, fmt.Errorf("advertise: %q is neither an IP address nor a host name", c.Advertise)
		}
	}
	a.Host = s
	return a, nil
}
