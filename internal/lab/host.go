package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/booture/booture/internal/api"
)

// Host is a namespace on the lab's LAN that runs a booture.
type Host struct {
	NS
	// Name is the booture's name (h1, h2, ...).
	Name string
	// Index is i in hi.
	Index int
	// IP is the host's LAN address, 198.51.100.i: bootured's --listen.
	IP netip.Addr
	// Iface is the WireGuard interface (unique across labs: the control
	// sockets in /var/run/wireguard are shared by all namespaces).
	Iface string
	// StateDir, Socket and LogPath are bootured's --state-dir, --socket
	// and its stderr (appended to across restarts).
	StateDir, Socket, LogPath string
	// daemonBin is the host's own bootured (Options.OwnBinary), else "".
	daemonBin string
	// Args are extra bootured flags, used from the next Start on.
	Args []string

	lab  *Lab
	port string // its veth on the bridge: h1, h2, ...

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	exitErr error
}

// StartTimeout bounds the wait for a daemon to serve its API.
const StartTimeout = 20 * time.Second

// DaemonArgs returns the command line bootured is started with.
func (h *Host) DaemonArgs() []string {
	lvl := os.Getenv(EnvLogLevel)
	if lvl == "" {
		lvl = "info"
	}
	bin := h.daemonBin
	if bin == "" {
		bin = h.lab.BinPath("bootured")
	}
	args := []string{bin,
		"--name", h.Name, "--state-dir", h.StateDir, "--socket", h.Socket,
		"--interface", h.Iface, "--listen", h.IP.String(), "--log-level", lvl}
	if h.lab.opts.Resync > 0 {
		args = append(args, "--resync", h.lab.opts.Resync.String())
	}
	args = append(args, h.lab.opts.DaemonArgs...)
	return append(args, h.Args...)
}

// Start starts bootured in the namespace and waits until it answers on its
// socket (at most StartTimeout). Its output is appended to LogPath.
func (h *Host) Start() error {
	h.mu.Lock()
	if h.cmd != nil {
		h.mu.Unlock()
		return fmt.Errorf("%s: bootured already running", h.Name)
	}
	logf, err := os.OpenFile(h.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		h.mu.Unlock()
		return err
	}
	args := h.DaemonArgs()
	fmt.Fprintf(logf, "==== lab: %s: ip netns exec %s %s\n", time.Now().Format(time.RFC3339Nano), h.NS.Name, strings.Join(args, " "))
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.NS.Name}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group; killed if this process dies, unless the lab
	// is to outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if h.lab.opts.Detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	err = cmd.Start()
	logf.Close()
	if err != nil {
		h.mu.Unlock()
		return fmt.Errorf("%s: starting bootured: %w", h.Name, err)
	}
	done := make(chan struct{})
	h.cmd, h.done, h.exitErr = cmd, done, nil
	h.mu.Unlock()
	go func() {
		err := cmd.Wait()
		h.mu.Lock()
		h.exitErr = err
		h.mu.Unlock()
		close(done)
	}()
	if err := h.waitReady(done); err != nil {
		return fmt.Errorf("%s: %w\n%s", h.Name, err, h.LogTail(30))
	}
	return nil
}

func (h *Host) waitReady(done chan struct{}) error {
	c := h.Client()
	deadline := time.Now().Add(StartTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			h.mu.Lock()
			h.cmd = nil
			err := h.exitErr
			h.mu.Unlock()
			return fmt.Errorf("bootured exited at start: %v", err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Status(ctx)
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("bootured did not answer on %s within %v", h.Socket, StartTimeout)
}

// Running reports whether the daemon runs.
func (h *Host) Running() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cmd != nil
}

// Crashed returns why the daemon exited when it did so by itself (it was
// started and neither stopped nor killed by the lab), or nil.
func (h *Host) Crashed() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil {
		return nil
	}
	select {
	case <-h.done:
		return fmt.Errorf("%s: bootured exited by itself: %v", h.Name, h.exitErr)
	default:
		return nil
	}
}

// PID returns the daemon's process id, 0 when it does not run.
func (h *Host) PID() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil {
		return 0
	}
	return h.cmd.Process.Pid
}

// Stop stops the daemon with SIGTERM and waits for it (at most 15 s, then
// SIGKILL and an error). It returns an error too if the daemon exited with
// a non-zero status.
func (h *Host) Stop() error { return h.stop(15 * time.Second) }

func (h *Host) stop(grace time.Duration) error {
	h.mu.Lock()
	cmd, done := h.cmd, h.done
	h.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := h.Crashed(); err != nil {
		h.mu.Lock()
		h.cmd = nil
		h.mu.Unlock()
		return err
	}
	cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-done:
		h.mu.Lock()
		if h.exitErr != nil {
			err = fmt.Errorf("%s: bootured exited after SIGTERM with: %v", h.Name, h.exitErr)
		}
		h.mu.Unlock()
	case <-time.After(grace):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		err = fmt.Errorf("%s: bootured did not stop within %v of SIGTERM: killed", h.Name, grace)
	}
	h.mu.Lock()
	h.cmd = nil
	h.mu.Unlock()
	return err
}

// Kill kills the daemon with SIGKILL (kill -9) and waits for it.
func (h *Host) Kill() error {
	h.mu.Lock()
	cmd, done := h.cmd, h.done
	h.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("%s: bootured is not running", h.Name)
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s: bootured still there 10s after SIGKILL", h.Name)
	}
	h.mu.Lock()
	h.cmd = nil
	h.mu.Unlock()
	return nil
}

// Restart stops the daemon (SIGTERM) and starts it again.
func (h *Host) Restart() error {
	if err := h.Stop(); err != nil {
		return err
	}
	return h.Start()
}

// LogTail returns the last n lines of the daemon's log.
func (h *Host) LogTail(n int) string {
	b, err := os.ReadFile(h.LogPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Log returns the daemon's whole log.
func (h *Host) Log() string {
	b, _ := os.ReadFile(h.LogPath)
	return string(b)
}

// Client returns an admin API client on the daemon's socket (what the CLI
// uses), for fast polling.
func (h *Host) Client() *api.Client { return api.NewClient(h.Socket) }

// CLI runs `booture --socket SOCKET args...` in the host's namespace.
func (h *Host) CLI(args ...string) Result {
	return h.CLIContext(context.Background(), args...)
}

// CLIContext is CLI with a context (the command is bounded to 70 s: the
// CLI itself gives up after 60).
func (h *Host) CLIContext(ctx context.Context, args ...string) Result {
	return h.RunContext(ctx, 70*time.Second, append([]string{h.lab.BinPath("booture"), "--socket", h.Socket}, args...)...)
}

// CLIInput is CLI with stdin as the command's standard input.
func (h *Host) CLIInput(stdin string, args ...string) Result {
	return runInput(context.Background(), 70*time.Second, h.env, stdin,
		append([]string{"ip", "netns", "exec", h.NS.Name, h.lab.BinPath("booture"), "--socket", h.Socket}, args...)...)
}

// CLIJSON runs the CLI with args and --json and decodes its output into v.
func (h *Host) CLIJSON(v any, args ...string) error {
	r := h.CLI(append(args, "--json")...)
	if err := r.Error(); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(r.Stdout)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: decoding %q: %w", r.Cmd(), r.Stdout, err)
	}
	return nil
}

// Status is `booture status --json`.
func (h *Host) Status() (api.Status, error) {
	var s api.Status
	return s, h.CLIJSON(&s, "status")
}

// Peers is `booture peers --json`.
func (h *Host) Peers() ([]api.Peer, error) {
	var p []api.Peer
	return p, h.CLIJSON(&p, "peers")
}

// MemberList is `booture member list --json`.
func (h *Host) MemberList() ([]api.Member, error) {
	var m []api.Member
	return m, h.CLIJSON(&m, "member", "list")
}

// Invite runs `booture invite` (with --expires if expires is not "") and
// returns the token.
func (h *Host) Invite(expires string) (string, error) {
	args := []string{"invite"}
	if expires != "" {
		args = append(args, "--expires", expires)
	}
	r := h.CLI(args...)
	if err := r.Error(); err != nil {
		return "", err
	}
	tok := strings.TrimSpace(r.Stdout)
	if tok == "" || strings.ContainsAny(tok, " \n") {
		return "", fmt.Errorf("%s: booture invite printed %q, not a token", h.Name, r.Stdout)
	}
	return tok, nil
}

// Join runs `booture join TOKEN`.
func (h *Host) Join(token string) error { return h.CLI("join", token).Error() }

// JoinVia makes h join the mesh of inviter: inviter invites, h joins.
func (h *Host) JoinVia(inviter *Host) error {
	tok, err := inviter.Invite("")
	if err != nil {
		return err
	}
	return h.Join(tok)
}

// WG is `wg show IFACE dump` of the booture's interface.
func (h *Host) WG() (WGDevice, error) { return h.WGShow(h.Iface) }

// MeshRoutes returns the routes out the booture's WireGuard interface.
func (h *Host) MeshRoutes() ([]netip.Prefix, error) { return h.Routes(h.Iface) }

// Cut takes the host off the LAN: its port on the bridge goes down.
func (h *Host) Cut() error {
	return h.lab.ip("-n", h.lab.Switch.Name, "link", "set", h.port, "down")
}

// Uncut puts the host back on the LAN.
func (h *Host) Uncut() error {
	return h.lab.ip("-n", h.lab.Switch.Name, "link", "set", h.port, "up")
}

// RSS returns the daemon's resident memory (VmRSS) in bytes.
func (h *Host) RSS() (int64, error) { return h.ProcStatus("VmRSS") }

// ProcStatus returns a memory field of the daemon's /proc/PID/status (VmRSS,
// RssAnon, RssFile, VmHWM...) in bytes.
func (h *Host) ProcStatus(field string) (int64, error) {
	pid := h.PID()
	if pid == 0 {
		return 0, errors.New(h.Name + ": bootured is not running")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024, err
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}
