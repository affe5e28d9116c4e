// Command lab is booture's demo, the first command of the README. On one
// Linux machine, as root, it builds booture, starts three bootures in
// network namespaces, links them into one mesh with invitations, adds a
// member with a real WireGuard client on the first one, starts a web site
// on the second through a plugin, and shows, step by step, their status,
// pings between them and the member opening the site by name; then it
// removes everything (also on Ctrl-C).
//
//	go run ./examples/lab          # the demo, then clean up
//	go run ./examples/lab -keep    # leave it running to play with
//	go run ./examples/lab -clean   # remove what -keep left running
//
// It needs the tools of a lab (ip, wg, wg-quick, wireguard-go, nft, ping,
// curl; see internal/lab), and installs them when they are missing. The demo
// is a list of steps (see steps): a new step is one more entry with its
// function.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/internal/lab"
)

// names of the demo's bootures and of its member.
var (
	bootureNames = []string{"diois", "crest", "saillans"}
	memberName   = "alice"
)

// step is one stage of the demo: a title and what it does and says.
type step struct {
	title string
	run   func(d *demo, ctx context.Context) error
}

// steps is the demo, in order.
func steps() []step {
	return []step{
		{"Build the programs", (*demo).build},
		{"Make a pretend network of three boxes", (*demo).network},
		{"Start a booture on each box", (*demo).startBootures},
		{"Link them into one mesh with invitations", (*demo).link},
		{"What each booture says (booture status)", (*demo).statuses},
		{"The bootures reach each other through WireGuard", (*demo).pingBootures},
		{"Add a member with a real WireGuard client", (*demo).addMember},
		{"The member reaches every booture", (*demo).pingFromMember},
		{"Start a service on crest and open it from the member, by name", (*demo).service},
	}
}

// demo is the state the steps share.
type demo struct {
	out  io.Writer
	keep bool
	// muted silences the steps once the demo is interrupted.
	muted atomic.Bool

	bin *lab.Binaries

	mu  sync.Mutex
	lab *lab.Lab

	status map[string]api.Status // by booture name, after linking
	member *lab.Member
}

func main() {
	keep := flag.Bool("keep", false, "leave the bootures running at the end, and print how to play with them and how to clean up")
	clean := flag.Bool("clean", false, "remove the bootures and namespaces that -keep left running, then exit")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: go run ./examples/lab [-keep | -clean]\n\n"+
			"Runs a demo mesh of three bootures in network namespaces on this machine (as root).\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	installDeps()
	if err := lab.Check(); err != nil {
		fmt.Fprintf(os.Stderr, "The demo cannot run here: %v\n", err)
		os.Exit(1)
	}
	if *clean {
		ids := lab.CleanKept(func(format string, args ...any) { fmt.Printf(format+"\n", args...) })
		if len(ids) == 0 {
			fmt.Println("Nothing to clean: no demo was left running.")
		}
		return
	}
	os.Exit(run(*keep))
}

func run(keep bool) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{out: os.Stdout, keep: keep, status: map[string]api.Status{}}
	d.say("booture demo: three bootures (small self-hosting boxes of associations) link into")
	d.say("one WireGuard mesh, here on this machine, and a member reaches all of them.")

	done := make(chan error, 1)
	go func() { done <- d.runSteps(ctx) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		stop() // a second Ctrl-C kills the demo at once
		d.say("\nInterrupted: cleaning up...")
		d.muted.Store(true)
		d.close()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
		}
		lab.RemoveBinaries()
		fmt.Fprintln(d.out, "Everything the demo made is removed.")
		return 130
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "\nThe demo failed: %v\n", err)
		d.showLogs()
		d.say("\nCleaning up...")
		d.close()
		lab.RemoveBinaries()
		return 1
	}
	if keep {
		if err := d.keepRunning(); err != nil {
			fmt.Fprintf(os.Stderr, "keeping the lab: %v\n", err)
			d.close()
			lab.RemoveBinaries()
			return 1
		}
		lab.RemoveBinaries()
		return 0
	}
	d.say("\nCleaning up: stopping the bootures and removing the namespaces...")
	if err := d.close(); err != nil {
		fmt.Fprintf(os.Stderr, "cleaning up: %v\n", err)
	}
	lab.RemoveBinaries()
	d.say("Done. Nothing is left behind. Run it with -keep to play with the mesh yourself.")
	return 0
}

func (d *demo) runSteps(ctx context.Context) error {
	all := steps()
	for i, s := range all {
		if err := ctx.Err(); err != nil {
			return err
		}
		d.say("\n== Step %d of %d: %s ==", i+1, len(all), s.title)
		if err := s.run(d, ctx); err != nil {
			return fmt.Errorf("step %d (%s): %w", i+1, s.title, err)
		}
	}
	return nil
}

func (d *demo) say(format string, args ...any) {
	if !d.muted.Load() {
		fmt.Fprintf(d.out, format+"\n", args...)
	}
}

// indent prints text indented by prefix.
func (d *demo) indent(prefix, text string) {
	if d.muted.Load() {
		return
	}
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		fmt.Fprintln(d.out, strings.TrimRight(prefix+l, " "))
	}
}

func (d *demo) getLab() *lab.Lab {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lab
}

func (d *demo) close() error {
	d.mu.Lock()
	l := d.lab
	d.mu.Unlock()
	if l == nil {
		return nil
	}
	return l.Close()
}

func (d *demo) showLogs() {
	l := d.getLab()
	if l == nil {
		return
	}
	for _, h := range l.Hosts {
		fmt.Fprintf(os.Stderr, "\n---- last lines of %s's log (%s) ----\n%s\n", h.Name, h.LogPath, h.LogTail(25))
	}
}

// ---- the steps ----

func (d *demo) build(ctx context.Context) error {
	d.say("Building bootured (the daemon that runs on each booture) and booture (the")
	d.say("command-line tool its admin uses) with go build...")
	t0 := time.Now()
	bin, err := lab.Build(ctx, "./examples/staticsite")
	if err != nil {
		return err
	}
	d.bin = bin
	d.say("Built in %.1fs.", time.Since(t0).Seconds())
	return nil
}

func (d *demo) network(ctx context.Context) error {
	d.say("This machine pretends to be three boxes of three associations. Each box is a")
	d.say("network namespace: a network stack of its own, as if it were another computer.")
	d.say("A virtual switch (a bridge, in a fourth namespace) links them on the LAN %s.", lab.LANPrefix)
	l, err := lab.Create(ctx, lab.Options{
		Hosts:    len(bootureNames),
		Names:    bootureNames,
		Detach:   d.keep,
		Binaries: d.bin,
	})
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.lab = l
	d.mu.Unlock()
	for _, h := range l.Hosts {
		d.say("  %-9s  namespace %s, LAN address %s", h.Name, h.NS.Name, h.IP)
	}
	return nil
}

func (d *demo) startBootures(ctx context.Context) error {
	l := d.getLab()
	d.say("Each box runs bootured. A booture that was never linked founds a mesh of its")
	d.say("own: it takes site 1, the addresses 10.77.1.0/24, and creates its WireGuard")
	d.say("interface. For the first box, the command is:")
	d.indent("  $ ", "ip netns exec "+l.H(1).NS.Name+" "+strings.Join(l.H(1).DaemonArgs(), " "))
	for _, h := range l.Hosts {
		if err := h.Start(); err != nil {
			return err
		}
		st, err := h.Status()
		if err != nil {
			return err
		}
		d.say("  %-9s  is up, alone in a mesh of its own, at %s", h.Name, st.MeshIPv4)
	}
	return nil
}

func (d *demo) link(ctx context.Context) error {
	l := d.getLab()
	h1, h2, h3 := l.H(1), l.H(2), l.H(3)
	d.say("The admin of %s runs \"booture invite\": it prints a one-time token, valid for", h1.Name)
	d.say("24 hours. On %s, \"booture join TOKEN\" links it into %s's mesh. Then %s,", h2.Name, h1.Name, h2.Name)
	d.say("now a booture of the mesh like any other, invites %s: no booture is special.", h3.Name)
	t0 := time.Now()
	for _, pair := range [][2]*lab.Host{{h1, h2}, {h2, h3}} {
		inviter, joiner := pair[0], pair[1]
		tok, err := inviter.Invite("")
		if err != nil {
			return err
		}
		d.say("  %s$ booture invite", inviter.Name)
		d.say("      %s", short(tok))
		r := joiner.CLI("join", tok)
		if err := r.Error(); err != nil {
			return err
		}
		d.say("  %s$ booture join %s", joiner.Name, short(tok))
		d.indent("      ", r.Stdout)
	}
	if err := lab.WaitMesh(30*time.Second, l.Hosts...); err != nil {
		return err
	}
	d.say("All three see each other, each with a WireGuard tunnel to the two others, %.1fs", time.Since(t0).Seconds())
	d.say("after the first invitation. Gossip (encrypted, no central server) keeps them in touch.")
	sts, err := lab.Statuses(l.Hosts...)
	if err != nil {
		return err
	}
	for _, st := range sts {
		d.status[st.Name] = st
	}
	return nil
}

// short abbreviates an invitation token for display.
func short(tok string) string {
	if len(tok) <= 40 {
		return tok
	}
	return tok[:32] + "..." + fmt.Sprintf(" (%d characters)", len(tok))
}

func (d *demo) statuses(ctx context.Context) error {
	l := d.getLab()
	d.say("\"booture status\" shows a booture's addresses in the mesh, its site, its key,")
	d.say("and the other bootures with their state and the traffic exchanged with them.")
	for _, h := range l.Hosts {
		r := h.CLI("status")
		if err := r.Error(); err != nil {
			return err
		}
		d.say("\n  %s$ booture status", h.Name)
		d.indent("    ", r.Stdout)
	}
	return nil
}

// pingLine pings the IPv4 and IPv6 addresses of st from ns and describes
// the result.
func pingLine(ns *lab.NS, st api.Status) (string, bool) {
	var parts []string
	ok := true
	for _, dst := range []string{st.MeshIPv4, st.MeshIPv6} {
		var p lab.PingResult
		var err error
		// A first packet may wait for the WireGuard handshake.
		for try := 0; try < 5; try++ {
			if p, err = ns.Ping(dst, 3, 200*time.Millisecond); err == nil && p.Received > 0 {
				break
			}
		}
		switch {
		case err != nil:
			parts = append(parts, fmt.Sprintf("%-22s FAILED (%v)", dst, err))
			ok = false
		case p.Received == 0:
			parts = append(parts, fmt.Sprintf("%-22s no answer", dst))
			ok = false
		default:
			parts = append(parts, fmt.Sprintf("%-22s %d/%d answers, %.2f ms", dst, p.Received, p.Sent, float64(p.AvgRTT.Microseconds())/1000))
		}
	}
	return strings.Join(parts, "   "), ok
}

func (d *demo) pingBootures(ctx context.Context) error {
	l := d.getLab()
	d.say("Each booture pings the others at their mesh addresses, IPv4 and IPv6, through the")
	d.say("encrypted WireGuard tunnels:")
	var failed []string
	for _, h := range l.Hosts {
		for _, o := range l.Hosts {
			if o == h {
				continue
			}
			line, ok := pingLine(&h.NS, d.status[o.Name])
			d.say("  %-9s -> %-9s %s", h.Name, o.Name, line)
			if !ok {
				failed = append(failed, h.Name+" -> "+o.Name)
			}
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("pings failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

func (d *demo) addMember(ctx context.Context) error {
	l := d.getLab()
	h1 := l.H(1)
	d.say("Members of an association reach the whole mesh with the stock WireGuard app.")
	d.say("The admin of %s adds %s; the tool prints the configuration the app imports", h1.Name, memberName)
	d.say("(with --qr, also as a QR code to scan with a phone):")
	r := h1.CLI("member", "add", memberName)
	if err := r.Error(); err != nil {
		return err
	}
	cfg := r.Stdout
	d.say("\n  %s$ booture member add %s", h1.Name, memberName)
	var shown []string
	for _, line := range strings.Split(strings.TrimRight(cfg, "\n"), "\n") {
		if strings.HasPrefix(line, "PrivateKey") {
			line = "PrivateKey = (hidden here: " + memberName + "'s key, shown once and never stored)"
		}
		shown = append(shown, line)
	}
	d.indent("    ", strings.Join(shown, "\n"))
	m, err := l.AddMember()
	if err != nil {
		return err
	}
	d.member = m
	d.say("\nA fourth namespace, %s on the LAN at %s, stands in for %s's laptop. It runs", m.NS.Name, m.IP, memberName)
	d.say("Debian's WireGuard client, wg-quick (with the userspace wireguard-go), from")
	d.say("exactly that text saved as %s:", m.ConfPath)
	d.say("  %s$ wg-quick up %s", memberName, m.ConfPath)
	if err := m.Up(cfg); err != nil {
		return err
	}
	if rc, err := m.ResolvConf(); err == nil && strings.Contains(rc, "nameserver") {
		d.say("Its DNS now points at %s (%s), which will answer names of the mesh's services.", h1.Name, d.status[h1.Name].MeshIPv4)
	}
	return nil
}

func (d *demo) pingFromMember(ctx context.Context) error {
	l := d.getLab()
	m := d.member
	d.say("%s is a member of %s, yet she reaches every booture of the mesh:", memberName, l.H(1).Name)
	var failed []string
	for _, h := range l.Hosts {
		line, ok := pingLine(&m.NS, d.status[h.Name])
		d.say("  %-9s -> %-9s %s", memberName, h.Name, line)
		if !ok {
			failed = append(failed, h.Name)
		}
	}
	r := l.H(1).CLI("member", "list")
	if err := r.Error(); err != nil {
		return err
	}
	d.say("\n  %s$ booture member list", l.H(1).Name)
	d.indent("    ", r.Stdout)
	if len(failed) > 0 {
		return fmt.Errorf("the member cannot reach %s", strings.Join(failed, ", "))
	}
	return nil
}

// service installs the example plugin on crest, declares a web site in
// crest's config, and fetches it from the member through the mesh's DNS.
func (d *demo) service(ctx context.Context) error {
	l := d.getLab()
	crest := l.H(2)
	d.say("Services are exposed through plugins. %s's admin installs a third-party plugin", crest.Name)
	d.say("(the example in examples/staticsite, which serves a folder as a web site); the")
	d.say("booture copies it and pins its SHA-256, and refuses it if it is ever changed:")
	dir := filepath.Dir(crest.StateDir)
	plugin := filepath.Join(dir, "booture-plugin-staticsite")
	if err := copyFile(l.BinPath("staticsite"), plugin); err != nil {
		return err
	}
	r := crest.CLI("plugin", "install", plugin)
	if err := r.Error(); err != nil {
		return err
	}
	d.say("  %s$ booture plugin install ./booture-plugin-staticsite", crest.Name)
	d.indent("    ", r.Stdout)

	site := filepath.Join(dir, "www")
	if err := os.MkdirAll(site, 0o755); err != nil {
		return err
	}
	page := "<!doctype html><title>crest</title><h1>Bonjour from crest's web site!</h1>\n"
	if err := os.WriteFile(filepath.Join(site, "index.html"), []byte(page), 0o644); err != nil {
		return err
	}
	conf := filepath.Join(dir, "booture.toml")
	text := fmt.Sprintf("[[service]]\nplugin = \"staticsite\"\nname   = \"site\"\naccess = \"mesh\"   # members of every booture of the mesh\n[service.settings]\nroot = %q\n", site)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return err
	}
	d.say("\nThe admin declares the service in %s's config file and restarts bootured:", crest.Name)
	d.indent("    ", text)
	crest.Args = append(crest.Args, "--config", conf)
	if err := crest.Restart(); err != nil {
		return err
	}
	url := "http://site." + crest.Name + ".booture.internal/"
	var svcs []api.Service
	err := lab.Eventually(ctx, 30*time.Second, 200*time.Millisecond, func() error {
		if err := l.H(1).CLIJSON(&svcs, "services"); err != nil {
			return err
		}
		for _, s := range svcs {
			if s.URL == url && s.Health == "healthy" {
				return nil
			}
		}
		return fmt.Errorf("%s not in %s's catalog yet", url, l.H(1).Name)
	})
	if err != nil {
		return err
	}
	r = l.H(1).CLI("services")
	d.say("\nThe service shows up in the catalog of every booture, through gossip:")
	d.say("  %s$ booture services", l.H(1).Name)
	d.indent("    ", r.Stdout)

	m := d.member
	d.say("\n%s, a member of %s, opens it by name. Her DNS is %s's, which answers the", memberName, l.H(1).Name, l.H(1).Name)
	d.say("mesh's names; %s's proxy carries the request to the plugin's web server:", crest.Name)
	d.say("  %s$ curl %s", memberName, url)
	var out lab.Result
	err = lab.Eventually(ctx, 30*time.Second, 500*time.Millisecond, func() error {
		out = m.NS.Run("curl", "-sS", "--max-time", "5", url)
		return out.Error()
	})
	if err != nil {
		return err
	}
	d.indent("    ", strings.TrimSpace(out.Stdout))
	portal := "http://" + crest.Name + ".booture.internal/"
	out = m.NS.Run("curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", portal)
	if err := out.Error(); err != nil {
		return err
	}
	d.say("\nAnd %s is the portal of %s, listing the mesh's services (HTTP %s bytes).", portal, crest.Name, out.Stdout)
	return nil
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}

// installDeps installs the Debian packages the demo needs when some are
// missing and we are root (scripts/install-deps.sh); otherwise lab.Check
// explains what is missing.
func installDeps() {
	if os.Geteuid() != 0 || lab.Check() == nil {
		return
	}
	root, err := lab.ModuleRoot(context.Background())
	if err != nil {
		return
	}
	fmt.Println("Installing the Debian packages the demo needs (scripts/install-deps.sh)...")
	cmd := exec.Command(filepath.Join(root, "scripts", "install-deps.sh"))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "installing packages: %v\n", err)
	}
}

// keepRunning leaves the lab running and says how to use and remove it.
func (d *demo) keepRunning() error {
	l := d.getLab()
	if l == nil {
		return errors.New("no lab")
	}
	if err := l.Keep(); err != nil {
		return err
	}
	h1, h2, h3 := l.H(1), l.H(2), l.H(3)
	cli := func(h *lab.Host) string {
		return fmt.Sprintf("ip netns exec %s %s --socket %s", h.NS.Name, l.BinPath("booture"), h.Socket)
	}
	d.say("\nThe mesh is still running. Each booture is a namespace; run commands in it with")
	d.say("\"ip netns exec NAMESPACE COMMAND\". Try, as root:")
	d.say("  %s status", cli(h1))
	d.say("  %s member add bob", cli(h2))
	d.say("  %s invite", cli(h3))
	d.say("  ip netns exec %s wg show", h1.NS.Name)
	d.say("  ip netns exec %s ping %s                 # %s to %s", d.member.NS.Name, d.status[h3.Name].MeshIPv4, memberName, h3.Name)
	d.say("  ip netns exec %s ip route                    # %s's routes", h2.NS.Name, h2.Name)
	d.say("Each booture's name, namespace, socket and log:")
	for _, h := range l.Hosts {
		d.say("  %-9s  %s  %s  %s", h.Name, h.NS.Name, h.Socket, h.LogPath)
	}
	d.say("%s's WireGuard configuration: %s (namespace %s)", memberName, d.member.ConfPath, d.member.NS.Name)
	d.say("\nWhen you are done, remove everything with:")
	d.say("  go run ./examples/lab -clean")
	return nil
}
