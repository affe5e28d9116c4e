// Package config is the daemon's typed configuration: defaults, the TOML
// config file (strict: an unknown key is an error that names it), the
// command-line flags (a flag wins over the file), and validation with
// one-line errors that name the key. The file and the flags are text; Load
// parses them once into typed values (netip addresses, the WireGuard mode,
// the gossip profile, the log level), so that the daemon never parses a
// setting again.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/booture/booture/catalog"
	"github.com/booture/booture/internal/names"
	"github.com/booture/booture/mesh"
	"github.com/booture/booture/netcfg"
)

// DefaultConfigFile is read when --config is not given, if it exists.
const DefaultConfigFile = "/etc/booture/booture.toml"

// Config is the daemon's configuration, parsed and typed: addresses are
// netip values, modes are the types of the packages that use them. Load
// builds it from the file and the flags (text, see settings); the daemon
// reads it and never parses a setting again.
type Config struct {
	// Name is this booture's name (a DNS label); default: the host name.
	Name string
	// StateDir holds keys, mesh state, members and plugin pins.
	StateDir string
	// File is the config file Load read ("" when none): backups keep it.
	File string
	// Socket is the admin API's unix socket.
	Socket string
	// SocketGroup, if set, is the group allowed to use the socket (mode
	// 0660); otherwise only root can (0600).
	SocketGroup string
	// Interface is the WireGuard interface name.
	Interface string
	// Listen is the underlay IP gossip binds to; the zero Addr means all.
	Listen netip.Addr
	// Advertise is where other bootures and members reach this one; the
	// zero value means detected.
	Advertise Advertised
	// WGPort is the WireGuard UDP port.
	WGPort int
	// GossipPort is the gossip TCP and UDP port.
	GossipPort int
	// MTU of the WireGuard interface; 0 means the underlay's minus 80.
	MTU int
	// WireGuardMode is the data plane: auto, kernel or userspace.
	WireGuardMode netcfg.Mode
	// GossipProfile is the gossip timings: lan or wan.
	GossipProfile mesh.Profile
	// Metrics is the listen address of the Prometheus endpoint; the zero
	// AddrPort means off.
	Metrics netip.AddrPort
	// Resync is how often the network state is re-applied to repair
	// changes made by hand.
	Resync time.Duration
	// LogLevel is the least level logged: debug, info, warn or error.
	LogLevel slog.Level
	// LogFormat is text or json.
	LogFormat string
	// AllowMemberToMember lets VPN members reach each other.
	AllowMemberToMember bool
	// Uplink is the interface full-tunnel members' traffic leaves by;
	// empty means the default route's.
	Uplink string
	// Domain is the DNS domain of the mesh's names.
	Domain string
	// HTTPPort is the port of the gateway (reverse proxy and portal) on the
	// mesh addresses, and on the LAN for public services.
	HTTPPort int
	// DNSPort is the port of the DNS server on the mesh addresses.
	DNSPort int
	// MeshTCPPorts and MeshUDPPorts are more ports of the mesh addresses
	// that members and other bootures may reach through the tunnel, for a
	// program the admin runs there (the gateway's and DNS's ports always
	// are; nothing else of the host is reachable through the tunnel).
	MeshTCPPorts, MeshUDPPorts []int
	// LANHTTP serves public services on the LAN address while there are
	// any (lan_http = "auto"); false is lan_http = "off".
	LANHTTP bool
	// PluginDirs are searched for booture-plugin-* binaries, after the
	// managed directory STATE_DIR/plugins.
	PluginDirs []string
	// PluginUser is who plugins run as: a user name or uid; empty means
	// booture-plugin if that user exists, else nobody; root means as the
	// daemon (plugins then can do all that root can).
	PluginUser string
	// DNSUpstreams are resolvers for names outside the mesh (port 53 when
	// the setting gives none); empty means those of /etc/resolv.conf.
	DNSUpstreams []netip.AddrPort
	// Services declared on this booture.
	Services []catalog.Spec
}

// settings is the configuration as it is written, in the config file and
// on the command line: text, under SPEC's key names (the flag names with
// '_' for '-'). parse turns it into a Config, once.
type settings struct {
	Name                string         `toml:"name"`
	StateDir            string         `toml:"state_dir"`
	Socket              string         `toml:"socket"`
	SocketGroup         string         `toml:"socket_group"`
	Interface           string         `toml:"interface"`
	Listen              string         `toml:"listen"`
	Advertise           string         `toml:"advertise"`
	WGPort              int            `toml:"wg_port"`
	GossipPort          int            `toml:"gossip_port"`
	MTU                 int            `toml:"mtu"`
	WireGuardMode       string         `toml:"wireguard_mode"`
	GossipProfile       string         `toml:"gossip_profile"`
	Metrics             string         `toml:"metrics"`
	Resync              time.Duration  `toml:"resync"`
	LogLevel            string         `toml:"log_level"`
	LogFormat           string         `toml:"log_format"`
	AllowMemberToMember bool           `toml:"allow_member_to_member"`
	Uplink              string         `toml:"uplink"`
	Domain              string         `toml:"domain"`
	HTTPPort            int            `toml:"http_port"`
	DNSPort             int            `toml:"dns_port"`
	MeshTCPPorts        []int          `toml:"mesh_tcp_ports"`
	MeshUDPPorts        []int          `toml:"mesh_udp_ports"`
	LANHTTP             string         `toml:"lan_http"`
	PluginDirs          []string       `toml:"plugin_dirs"`
	PluginUser          string         `toml:"plugin_user"`
	DNSUpstreams        []string       `toml:"dns_upstreams"`
	Services            []catalog.Spec `toml:"service"`
}

// defaults returns the settings used when nothing is set.
func defaults() settings {
	host, _ := os.Hostname()
	return settings{
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

// Default returns the configuration used when nothing is set.
func Default() Config {
	c, err := defaults().parse()
	if err != nil {
		panic("config: the defaults do not parse: " + err.Error())
	}
	return c
}

// logLevels are the log_level values.
var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
}

// parse turns the written settings into a Config. An error is one line and
// starts with the key whose value does not parse; what parses but is out of
// range is for Validate.
func (s settings) parse() (Config, error) {
	c := Config{
		Name: s.Name, StateDir: s.StateDir, Socket: s.Socket, SocketGroup: s.SocketGroup, Interface: s.Interface,
		WGPort: s.WGPort, GossipPort: s.GossipPort, MTU: s.MTU, Resync: s.Resync, LogFormat: s.LogFormat,
		AllowMemberToMember: s.AllowMemberToMember, Uplink: s.Uplink, Domain: s.Domain,
		HTTPPort: s.HTTPPort, DNSPort: s.DNSPort, PluginDirs: s.PluginDirs, Services: s.Services,
		PluginUser:   s.PluginUser,
		MeshTCPPorts: s.MeshTCPPorts, MeshUDPPorts: s.MeshUDPPorts,
	}
	if s.Listen != "" {
		ip, err := netip.ParseAddr(s.Listen)
		if err != nil {
			return c, fmt.Errorf("listen: %q is not an IP address", s.Listen)
		}
		c.Listen = ip
	}
	if s.Advertise != "" {
		adv, err := ParseAdvertise(s.Advertise)
		if err != nil {
			return c, err
		}
		c.Advertise = adv
	}
	switch m := netcfg.Mode(s.WireGuardMode); m {
	case netcfg.ModeAuto, netcfg.ModeKernel, netcfg.ModeUserspace:
		c.WireGuardMode = m
	default:
		return c, fmt.Errorf("wireguard_mode: %q: want auto, kernel or userspace", s.WireGuardMode)
	}
	switch p := mesh.Profile(s.GossipProfile); p {
	case mesh.ProfileLAN, mesh.ProfileWAN:
		c.GossipProfile = p
	default:
		return c, fmt.Errorf("gossip_profile: %q: want lan or wan", s.GossipProfile)
	}
	if s.Metrics != "" {
		ap, err := netip.ParseAddrPort(s.Metrics)
		if err != nil {
			return c, fmt.Errorf("metrics: %q is not IP:PORT", s.Metrics)
		}
		c.Metrics = ap
	}
	level, ok := logLevels[s.LogLevel]
	if !ok {
		return c, fmt.Errorf("log_level: %q: want debug, info, warn or error", s.LogLevel)
	}
	c.LogLevel = level
	switch s.LANHTTP {
	case "auto":
		c.LANHTTP = true
	case "off":
	default:
		return c, fmt.Errorf("lan_http: %q: want auto or off", s.LANHTTP)
	}
	for _, u := range s.DNSUpstreams {
		ap, err := netip.ParseAddrPort(u)
		if err != nil {
			ip, err := netip.ParseAddr(u)
			if err != nil {
				return c, fmt.Errorf("dns_upstreams: %q is not IP or IP:PORT", u)
			}
			ap = netip.AddrPortFrom(ip, 53)
		}
		c.DNSUpstreams = append(c.DNSUpstreams, ap)
	}
	return c, nil
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

// Decode reads a config file's TOML from r over the defaults, rejecting
// unknown keys, and parses it (see Load; Validate is left to the caller).
// source names the file in errors.
func Decode(r io.Reader, source string) (Config, error) {
	s := defaults()
	if err := s.decode(r, source); err != nil {
		return Config{}, err
	}
	c, err := s.parse()
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", source, err)
	}
	return c, nil
}

// decode reads TOML from r into s, rejecting unknown keys.
func (s *settings) decode(r io.Reader, source string) error {
	md, err := toml.NewDecoder(r).Decode(s)
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
	set := defaults()
	fs := flag.NewFlagSet("bootured", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var file string
	fs.StringVar(&file, "config", "", "config file (TOML); default "+DefaultConfigFile+" if it exists")
	flagSet := set
	bindFlags(fs, &flagSet)
	fs.Usage = func() { usage(fs, stderr) }
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q (see bootured --help)", fs.Arg(0))
	}
	if file == "" {
		if _, err := os.Stat(DefaultConfigFile); err == nil {
			file = DefaultConfigFile
		}
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return Config{}, fmt.Errorf("reading config: %w", err)
		}
		if err := set.decode(bytes.NewReader(b), file); err != nil {
			return Config{}, err
		}
	}
	// Flags given on the command line win over the file.
	fs.Visit(func(f *flag.Flag) { copyFlag(&set, &flagSet, f.Name) })
	cfg, err := set.parse()
	if err != nil {
		return Config{}, err
	}
	cfg.File = file
	return cfg, cfg.Validate()
}

// flagFields binds each flag to its field, so that Load can copy the ones
// given on the command line.
var flagFields = map[string]func(dst, src *settings){
	"name":                   func(d, s *settings) { d.Name = s.Name },
	"state-dir":              func(d, s *settings) { d.StateDir = s.StateDir },
	"socket":                 func(d, s *settings) { d.Socket = s.Socket },
	"socket-group":           func(d, s *settings) { d.SocketGroup = s.SocketGroup },
	"interface":              func(d, s *settings) { d.Interface = s.Interface },
	"listen":                 func(d, s *settings) { d.Listen = s.Listen },
	"advertise":              func(d, s *settings) { d.Advertise = s.Advertise },
	"wg-port":                func(d, s *settings) { d.WGPort = s.WGPort },
	"gossip-port":            func(d, s *settings) { d.GossipPort = s.GossipPort },
	"mtu":                    func(d, s *settings) { d.MTU = s.MTU },
	"wireguard-mode":         func(d, s *settings) { d.WireGuardMode = s.WireGuardMode },
	"gossip-profile":         func(d, s *settings) { d.GossipProfile = s.GossipProfile },
	"metrics":                func(d, s *settings) { d.Metrics = s.Metrics },
	"resync":                 func(d, s *settings) { d.Resync = s.Resync },
	"log-level":              func(d, s *settings) { d.LogLevel = s.LogLevel },
	"log-format":             func(d, s *settings) { d.LogFormat = s.LogFormat },
	"allow-member-to-member": func(d, s *settings) { d.AllowMemberToMember = s.AllowMemberToMember },
	"uplink":                 func(d, s *settings) { d.Uplink = s.Uplink },
	"domain":                 func(d, s *settings) { d.Domain = s.Domain },
	"http-port":              func(d, s *settings) { d.HTTPPort = s.HTTPPort },
	"dns-port":               func(d, s *settings) { d.DNSPort = s.DNSPort },
	"mesh-tcp-port":          func(d, s *settings) { d.MeshTCPPorts = s.MeshTCPPorts },
	"mesh-udp-port":          func(d, s *settings) { d.MeshUDPPorts = s.MeshUDPPorts },
	"lan-http":               func(d, s *settings) { d.LANHTTP = s.LANHTTP },
	"plugin-dir":             func(d, s *settings) { d.PluginDirs = s.PluginDirs },
	"plugin-user":            func(d, s *settings) { d.PluginUser = s.PluginUser },
}

func copyFlag(dst, src *settings, name string) {
	if f, ok := flagFields[name]; ok {
		f(dst, src)
	}
}

func bindFlags(fs *flag.FlagSet, c *settings) {
	fs.StringVar(&c.Name, "name", c.Name, "this booture's name: a-z, 0-9 and '-' (default: the host name)")
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "directory for keys, mesh state, members and plugin pins")
	fs.StringVar(&c.Socket, "socket", c.Socket, "admin API unix socket")
	fs.StringVar(&c.SocketGroup, "socket-group", c.SocketGroup, "group allowed to use the admin socket, with root's power over the daemon (default: root only)")
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
	fs.Var((*intList)(&c.MeshTCPPorts), "mesh-tcp-port", "another TCP port of the mesh addresses that members and bootures may reach, for a program of yours (repeatable; default: only the gateway's and DNS's)")
	fs.Var((*intList)(&c.MeshUDPPorts), "mesh-udp-port", "another UDP port of the mesh addresses that members and bootures may reach (repeatable)")
	fs.StringVar(&c.LANHTTP, "lan-http", c.LANHTTP, "auto: serve public services on the LAN address too; off: never")
	fs.Var((*stringList)(&c.PluginDirs), "plugin-dir", "extra directory searched for booture-plugin-* binaries (repeatable)")
	fs.StringVar(&c.PluginUser, "plugin-user", c.PluginUser, "user plugins run as; they read only the files it may (default: booture-plugin if it exists, else nobody; root: as the daemon)")
}

type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

type intList []int

func (l *intList) String() string { return fmt.Sprint(*l) }
func (l *intList) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("%q is not a number", v)
	}
	*l = append(*l, n)
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
// one-line error that starts with the setting's key. Load calls it; so does
// the daemon, for a Config built in code.
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
	for _, p := range []struct {
		name string
		v    int
	}{{"wg_port", c.WGPort}, {"gossip_port", c.GossipPort}, {"http_port", c.HTTPPort}, {"dns_port", c.DNSPort}} {
		if p.v < 1 || p.v > 65535 {
			return fmt.Errorf("%s: %d is not a port number (1-65535)", p.name, p.v)
		}
	}
	for _, l := range []struct {
		name  string
		ports []int
	}{{"mesh_tcp_ports", c.MeshTCPPorts}, {"mesh_udp_ports", c.MeshUDPPorts}} {
		for _, p := range l.ports {
			if p < 1 || p > 65535 {
				return fmt.Errorf("%s: %d is not a port number (1-65535)", l.name, p)
			}
		}
	}
	if c.Advertise.Port < 0 || c.Advertise.Port > 65535 {
		return fmt.Errorf("advertise: %d is not a port number (1-65535)", c.Advertise.Port)
	}
	if c.MTU != 0 && (c.MTU < 1280 || c.MTU > 9000) {
		return fmt.Errorf("mtu: %d out of range (1280-9000, or 0 for automatic)", c.MTU)
	}
	switch c.WireGuardMode {
	case netcfg.ModeAuto, netcfg.ModeKernel, netcfg.ModeUserspace:
	default:
		return fmt.Errorf("wireguard_mode: %q: want auto, kernel or userspace", c.WireGuardMode)
	}
	switch c.GossipProfile {
	case mesh.ProfileLAN, mesh.ProfileWAN:
	default:
		return fmt.Errorf("gossip_profile: %q: want lan or wan", c.GossipProfile)
	}
	if c.Resync < time.Second {
		return fmt.Errorf("resync: %v is too short (at least 1s)", c.Resync)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("log_format: %q: want text or json", c.LogFormat)
	}
	if c.Domain == "" || strings.HasSuffix(c.Domain, ".") {
		return fmt.Errorf("domain: %q is not a domain (no trailing dot)", c.Domain)
	}
	for _, label := range strings.Split(c.Domain, ".") {
		if err := names.Check(label); err != nil {
			return fmt.Errorf("domain: %w", err)
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

// Advertised is where other bootures and members reach this booture: the
// parsed advertise setting (HOST, HOST:PORT, IPv6 in brackets). A host
// name is allowed for members' endpoint (e.g. a dynamic DNS name for
// members outside the LAN); gossip then advertises the listen or detected
// IP. The zero value means not set.
type Advertised struct {
	// IP is set when the host is an IP address; Host is always set.
	IP   netip.Addr
	Host string
	// Port is the WireGuard port members use (a port forwarded on a
	// router); 0 when not given.
	Port int
}

// ParseAdvertise parses an advertise setting; the error names the key.
func ParseAdvertise(s string) (Advertised, error) {
	orig := s
	var a Advertised
	if host, port, err := net.SplitHostPort(s); err == nil {
		p, perr := strconv.Atoi(port)
		if perr != nil || p < 1 || p > 65535 {
			return Advertised{}, fmt.Errorf("advertise: bad port in %q", orig)
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
			return Advertised{}, fmt.Errorf("advertise: %q is neither an IP address nor a host name", orig)
		}
	}
	a.Host = s
	return a, nil
}
