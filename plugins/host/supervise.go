package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/booture/booture/catalog"
	"github.com/booture/booture/plugins/internal/wire"
	pb "github.com/booture/booture/plugins/proto"
)

// envLogLevel must match sdk.EnvLogLevel (checked by a test).
const envLogLevel = "BOOTURE_PLUGIN_LOG_LEVEL"

// pluginPath is the PATH of plugins, whose environment is otherwise empty
// (SkipHostEnv: the daemon's environment may hold secrets).
const pluginPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// supervised is a plugin used by at least one service, and its supervisor's
// state. Fields below the line are guarded by Manager.mu.
type supervised struct {
	name     string
	services []*service
	reload   chan reloadReq
	exited   chan struct{} // closed when the supervisor returns

	state    State
	pid      int
	restarts int
	lastErr  string
	version  string
	path     string
	notes    []string
}

type reloadReq struct {
	ctx  context.Context
	done chan error // buffered: the supervisor never waits on it
}

// permanentError marks failures a restart cannot fix (missing binary,
// checksum mismatch, a binary that is not the plugin it claims to be).
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

func isPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// instance is one running plugin process.
type instance struct {
	client  *plugin.Client
	cmd     *exec.Cmd
	rpc     *wire.Client
	desc    wire.Description
	path    string
	pid     int
	checked wire.CheckedRoutes
	notes   []wire.Note
	report  *wire.Report // last health answer
	sockDir string       // the plugin's socket directory, removed after it ends

	release  chan struct{} // lets the forking thread exit
	stopOnce sync.Once
}

func (m *Manager) specsOf(sp *supervised) []wire.Spec {
	out := make([]wire.Spec, 0, len(sp.services))
	for _, s := range sp.services {
		out = append(out, s.spec)
	}
	return out
}

// start starts the binary at path, checks it against sum, and connects.
func (m *Manager) start(name, path string, sum []byte) (_ *instance, err error) {
	sockDir, err := m.socketDir()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(sockDir)
		}
	}()
	level := m.opts.PluginLogLevel
	if level == "" {
		level = "info"
	}
	cmd := exec.Command(path)
	cmd.Dir = "/"
	cmd.Env = []string{
		"PATH=" + pluginPath,
		plugin.EnvUnixSocketDir + "=" + sockDir,
		envLogLevel + "=" + level,
	}
	cmd.SysProcAttr = sysProcAttr()
	// A fresh hash per start: SecureConfig never resets it.
	secure := &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	var sockCfg *plugin.UnixSocketConfig
	if u := m.opts.User; u.switches() {
		// The plugin calls back through sockets the host makes (the
		// broker's): give them to the plugin user's group, 0660, or the
		// plugin may not connect. Mutual TLS still guards them.
		sockCfg = &plugin.UnixSocketConfig{Group: strconv.FormatUint(uint64(u.GID), 10)}
		// The plugin user may not enter the directory of the binary (the
		// state directory is root's alone): the binary is opened here,
		// checked, and run from the open file, so what runs is exactly
		// what was checked.
		bin, err := openPinned(path, sum)
		if err != nil {
			return nil, err
		}
		defer bin.Close() // the child has its own copy once started
		if err := runAs(cmd, bin, u); err != nil {
			return nil, err
		}
		secure = nil
	}
	plog := m.log.With("plugin", name)
	var info wire.MeshInfo = noMesh{}
	if m.opts.MeshInfo != nil {
		info = m.opts.MeshInfo
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  pb.Handshake(),
		VersionedPlugins: wire.PluginSets(info),
		Cmd:              cmd,
		SecureConfig:     secure,
		UnixSocketConfig: sockCfg,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		StartTimeout:     m.t.StartTimeout,
		Logger:           &hcLogger{log: plog},
		Stderr:           &lineWriter{emit: func(l string) { pluginLog(plog, l) }},
		SyncStdout:       &lineWriter{emit: func(l string) { plog.Info("plugin stdout", "line", l) }},
		SyncStderr:       &lineWriter{emit: func(l string) { plog.Info("plugin stderr", "line", l) }},
	})
	inst := &instance{client: client, cmd: cmd, path: path, sockDir: sockDir, release: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// The kernel sends the plugin its parent-death signal when the
		// thread that forked it exits, and Go retires threads at will. So
		// fork from a locked thread, and keep it (never unlocking) until
		// the plugin is gone: the goroutine's end then ends the thread.
		runtime.LockOSThread()
		_, err := client.Start()
		started <- err
		<-inst.release
	}()
	if err := <-started; err != nil {
		sockDir = "" // inst.stop removes it
		inst.stop(false, 0)
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			return nil, permanentError{fmt.Errorf("%w: %s changed since it was checked", ErrChecksumMismatch, path)}
		}
		return nil, fmt.Errorf("starting %s: %s", path, m.startError(err, cmd))
	}
	inst.pid = cmd.Process.Pid
	sockDir = "" // inst.stop removes it from now on
	cp, err := client.Client()
	if err != nil {
		inst.stop(false, 0)
		return nil, fmt.Errorf("connecting to %s: %w", path, err)
	}
	if inst.rpc, err = wire.Dispense(cp); err != nil {
		inst.stop(false, 0)
		return nil, err
	}
	return inst, nil
}

// socketDir makes the directory one plugin process creates its unix
// socket in: a new one per start inside Options.SocketDir, owned by the
// plugin user. SocketDir itself must be the daemon's (no one else may
// rename what is in it); it is 0711 when plugins run as another user (who
// must pass through it, without seeing the others), else 0700.
func (m *Manager) socketDir() (string, error) {
	base := m.opts.SocketDir
	mode := os.FileMode(0o700)
	if m.opts.User.switches() {
		mode = 0o711
	}
	if err := os.MkdirAll(base, mode); err != nil {
		return "", fmt.Errorf("socket dir: %w", err)
	}
	fi, err := os.Lstat(base)
	if err != nil {
		return "", fmt.Errorf("socket dir: %w", err)
	}
	if uid, ok := fileOwner(fi); !fi.IsDir() || ok && uid != os.Geteuid() {
		return "", fmt.Errorf("socket dir %s: not a directory of the daemon's user (uid %d); remove it or choose another", base, os.Geteuid())
	}
	if fi.Mode().Perm() != mode {
		if err := os.Chmod(base, mode); err != nil {
			return "", fmt.Errorf("socket dir: %w", err)
		}
	}
	dir, err := os.MkdirTemp(base, "p")
	if err != nil {
		return "", fmt.Errorf("socket dir: %w", err)
	}
	if u := m.opts.User; u.switches() {
		if err := os.Chown(dir, int(u.UID), int(u.GID)); err != nil {
			os.Remove(dir)
			return "", fmt.Errorf("socket dir: %w", err)
		}
	}
	return dir, nil
}

// openPinned opens the binary at path and checks that it is the pinned
// one (sum), reading it through the returned file.
func openPinned(path string, sum []byte) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", path, err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		f.Close()
		return nil, fmt.Errorf("hashing %s: %w", path, err)
	}
	if !bytes.Equal(h.Sum(nil), sum) {
		f.Close()
		return nil, permanentError{fmt.Errorf("%w: %s changed since it was checked", ErrChecksumMismatch, path)}
	}
	return f, nil
}

// startError rewords go-plugin's handshake errors (v1.8.0's texts) for
// an admin. cmd has been waited for (inst.stop).
func (m *Manager) startError(err error, cmd *exec.Cmd) string {
	msg := err.Error()
	exit := "killed"
	if ps := cmd.ProcessState; ps != nil {
		exit = ps.String()
	}
	switch {
	case strings.HasPrefix(msg, "Unrecognized remote plugin message: "):
		line, _, _ := strings.Cut(strings.TrimPrefix(msg, "Unrecognized remote plugin message: "), "\n")
		if strings.TrimSpace(line) == "" {
			return "plugin exited before the handshake (" + exit + ")"
		}
		return fmt.Sprintf("plugin printed %q on stdout instead of the handshake (nothing may be written to stdout before sdk.Serve)", oneLine(line))
	case strings.Contains(msg, "plugin exited before we could connect"):
		return "plugin exited before the handshake (" + exit + ")"
	case strings.Contains(msg, "timeout while waiting for plugin to start"):
		return fmt.Sprintf("plugin did not complete the handshake within %s", m.t.StartTimeout)
	case strings.Contains(msg, "Incompatible API version") || strings.Contains(msg, "incompatible"):
		return "plugin speaks another protocol version: " + oneLine(msg)
	}
	return oneLine(msg)
}

// oneLine keeps error text from a plugin readable in one log line and
// bounded (go-plugin quotes whatever the plugin printed).
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// stop ends the process, once: gracefully (Stop, then go-plugin's Kill,
// which closes the connection and waits up to 2 s) or by SIGKILL.
func (inst *instance) stop(graceful bool, callTimeout time.Duration) {
	inst.stopOnce.Do(func() {
		defer close(inst.release)
		// A killed plugin leaves its socket file behind.
		defer func() {
			if inst.sockDir != "" {
				os.RemoveAll(inst.sockDir)
			}
		}()
		if inst.client == nil {
			return
		}
		if graceful && inst.rpc != nil && !inst.client.Exited() {
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			_ = inst.rpc.Stop(ctx) // the process ends below either way
			cancel()
		} else if inst.cmd.Process != nil {
			_ = inst.cmd.Process.Kill()
		}
		done := make(chan struct{})
		go func() {
			inst.client.Kill()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			if inst.cmd.Process != nil {
				_ = inst.cmd.Process.Kill()
			}
			<-done
		}
	})
}

// probe starts a binary, checks its description, and stops it.
func (m *Manager) probe(ctx context.Context, name, path string, sum []byte) (wire.Description, error) {
	inst, err := m.start(name, path, sum)
	if err != nil {
		return wire.Description{}, err
	}
	defer inst.stop(true, m.t.CallTimeout)
	cctx, cancel := context.WithTimeout(ctx, m.t.CallTimeout)
	defer cancel()
	desc, err := inst.rpc.Describe(cctx)
	if err != nil {
		return wire.Description{}, err
	}
	if err := wire.CheckDescription(desc, name); err != nil {
		return wire.Description{}, err
	}
	return desc, nil
}

// launch starts plugin sp's pinned binary, checks its description and
// configures it.
func (m *Manager) launch(ctx context.Context, sp *supervised) (*instance, error) {
	path, sum, err := m.resolve(sp.name)
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrChecksumMismatch) || errors.Is(err, ErrUntrusted) {
			return nil, permanentError{err}
		}
		return nil, err
	}
	inst, err := m.start(sp.name, path, sum)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, m.t.CallTimeout)
	inst.desc, err = inst.rpc.Describe(dctx)
	cancel()
	if err != nil {
		inst.stop(false, 0)
		return nil, m.callError(err, "describe", m.t.CallTimeout)
	}
	if err := wire.CheckDescription(inst.desc, sp.name); err != nil {
		inst.stop(false, 0)
		return nil, permanentError{fmt.Errorf("invalid description: %w", err)}
	}
	specs := m.specsOf(sp)
	cctx, cancel := context.WithTimeout(ctx, m.t.ConfigureTimeout)
	conf, err := inst.rpc.Configure(cctx, m.mesh, specs)
	cancel()
	if err != nil {
		inst.stop(false, 0)
		return nil, m.callError(err, "configure", m.t.ConfigureTimeout)
	}
	inst.checked = wire.CheckRoutes(m.mesh, specs, conf.Routes)
	inst.notes = conf.Notes
	return inst, nil
}

// callError turns a failed call into a clear error; a deadline means the
// plugin hung.
func (m *Manager) callError(err error, call string, timeout time.Duration) error {
	if status.Code(err) == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("plugin hung: %s did not answer within %s", call, timeout)
	}
	return fmt.Errorf("%s failed: %s", call, grpcMessage(err))
}

// grpcMessage is the message of a (wrapped) gRPC error, without the
// "rpc error: code = ... desc =" decoration.
func grpcMessage(err error) string {
	if s, ok := status.FromError(err); ok {
		return oneLine(s.Message())
	}
	return oneLine(err.Error())
}

// supervise keeps plugin sp running until ctx ends.
func (m *Manager) supervise(ctx context.Context, sp *supervised) {
	defer close(sp.exited)
	log := m.log.With("plugin", sp.name)
	failures := 0
	var pending *reloadReq // a Reload that asked for this start
	for ctx.Err() == nil {
		m.setState(sp, StateStarting, "plugin starting")
		if failures > 0 {
			m.mu.Lock()
			sp.restarts++
			m.mu.Unlock()
		}
		inst, err := m.launch(ctx, sp)
		if pending != nil {
			pending.done <- err
			pending = nil
		}
		if err == nil && ctx.Err() != nil {
			inst.stop(true, m.t.CallTimeout)
			break
		}
		var since time.Time
		if err == nil {
			m.publish(sp, inst, log)
			log.Info("plugin running", "version", inst.desc.Version, "pid", inst.pid)
			since = time.Now()
			err = m.watch(ctx, sp, &inst, log)
			if err == nil {
				break // ctx ended; inst stopped
			}
			if time.Since(since) >= m.t.StableAfter {
				failures = 0
			}
		}
		if ctx.Err() != nil {
			break
		}
		failures++
		if req, ok := m.afterFailure(ctx, sp, failures, err, log); !ok {
			break
		} else if req != nil {
			pending, failures = req, 0
		}
	}
	if pending != nil {
		pending.done <- errors.New("the plugin host is stopping")
	}
	m.setState(sp, StateStopped, "plugin stopped")
}

// afterFailure records err and waits: the backoff delay, or, after too
// many failures or a permanent one, until a Reload. It returns the Reload
// that ended the wait, if any, and false when ctx ended.
func (m *Manager) afterFailure(ctx context.Context, sp *supervised, failures int, err error, log *slog.Logger) (*reloadReq, bool) {
	if isPermanent(err) || failures >= m.t.MaxFailures {
		m.recordErr(sp, err)
		m.setState(sp, StateFailed, "plugin failed: "+err.Error())
		log.Error("plugin failed; fix it, then reload it", "error", err, "failures", failures)
		select {
		case req := <-sp.reload:
			return &req, true
		case <-ctx.Done():
			return nil, false
		}
	}
	delay := m.t.BackoffMin << (failures - 1)
	if delay > m.t.BackoffMax || delay <= 0 {
		delay = m.t.BackoffMax
	}
	m.recordErr(sp, err)
	m.setState(sp, StateBackoff, fmt.Sprintf("plugin restarting in %s: %v", delay, err))
	log.Warn("plugin down, restarting with backoff", "error", err, "in", delay.String(), "failures", failures)
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil, true
	case req := <-sp.reload:
		return &req, true
	case <-ctx.Done():
		return nil, false
	}
}

// watch polls a running plugin until ctx ends (nil, the plugin stopped) or
// it crashes or hangs (the error; the process is killed). It serves
// Reloads, which replace *inst.
func (m *Manager) watch(ctx context.Context, sp *supervised, inst **instance, log *slog.Logger) error {
	exitEvery := min(m.t.HealthInterval, 200*time.Millisecond)
	exitTick := time.NewTicker(exitEvery)
	defer exitTick.Stop()
	healthTick := time.NewTicker(m.t.HealthInterval)
	defer healthTick.Stop()
	if err := m.poll(sp, *inst); err != nil {
		(*inst).stop(false, 0)
		return err
	}
	for {
		select {
		case <-ctx.Done():
			(*inst).stop(true, m.t.CallTimeout)
			return nil
		case req := <-sp.reload:
			m.swap(sp, inst, req, log)
		case <-exitTick.C:
			if (*inst).client.Exited() {
				pid := (*inst).pid
				(*inst).stop(false, 0)
				return fmt.Errorf("plugin process %d exited", pid)
			}
		case <-healthTick.C:
			if err := m.poll(sp, *inst); err != nil {
				(*inst).stop(false, 0)
				return err
			}
		}
	}
}

// poll asks a plugin for its health and records it. An error means the
// plugin is gone or hung.
func (m *Manager) poll(sp *supervised, inst *instance) error {
	rep, err := m.health(inst)
	if err != nil {
		return err
	}
	m.setHealth(sp, inst, rep)
	return nil
}

// health calls Health with the call deadline. A plugin answering with an
// error is alive (its services' health is unknown); a deadline or a broken
// connection is returned as an error.
func (m *Manager) health(inst *instance) (wire.Report, error) {
	ctx, cancel := context.WithTimeout(context.Background(), m.t.CallTimeout)
	defer cancel()
	rep, err := inst.rpc.Health(ctx)
	switch {
	case err == nil:
		return rep, nil
	case status.Code(err) == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded):
		return wire.Report{}, fmt.Errorf("plugin hung: health did not answer within %s; killed it", m.t.CallTimeout)
	case status.Code(err) == codes.Unavailable || inst.client.Exited():
		return wire.Report{}, fmt.Errorf("plugin process %d is gone: %s", inst.pid, oneLine(err.Error()))
	}
	return wire.Report{State: catalog.HealthUnknown, Message: "health failed: " + grpcMessage(err)}, nil
}

// swap serves a Reload: start the new binary, wait until it is configured
// and healthy, switch routes at once, stop the old process after the drain
// delay. On error the old process keeps serving.
func (m *Manager) swap(sp *supervised, inst **instance, req reloadReq, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(req.ctx, m.t.ReloadTimeout)
	defer cancel()
	log.Info("reloading plugin")
	next, err := m.launch(ctx, sp)
	if err == nil {
		if err = m.waitReady(ctx, sp, *inst, next); err != nil {
			next.stop(false, 0)
		}
	}
	if err != nil {
		log.Warn("reload failed; the running plugin keeps serving", "error", err)
		req.done <- err
		return
	}
	old := *inst
	*inst = next
	m.publish(sp, next, log)
	m.setHealth(sp, next, *next.report)
	log.Info("plugin reloaded", "version", next.desc.Version, "pid", next.pid, "old_pid", old.pid)
	m.drain.Add(1)
	go func() {
		defer m.drain.Done()
		t := time.NewTimer(m.t.DrainDelay)
		defer t.Stop()
		<-t.C
		old.stop(true, m.t.CallTimeout)
	}()
	req.done <- nil
}

// waitReady returns nil once next's routes are accepted wherever old's
// were and each service is healthy (or degraded), or no worse than now:
// an upstream that is down is not the new binary's fault.
func (m *Manager) waitReady(ctx context.Context, sp *supervised, old, next *instance) error {
	for _, s := range m.specsOf(sp) {
		if e := next.checked.Errors[s.Name]; e != nil && old.checked.Errors[s.Name] == nil {
			return fmt.Errorf("new binary's routes for service %s refused: %w", s.Name, e)
		}
	}
	every := min(m.t.HealthInterval, 100*time.Millisecond)
	for {
		rep, err := m.health(next)
		if err != nil {
			return err
		}
		next.report = &rep
		if m.readyLocked(sp, rep) {
			return nil
		}
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("new plugin not healthy in time (%s): %w", rep.Message, ctx.Err())
		case <-t.C:
		}
	}
}

func (m *Manager) readyLocked(sp *supervised, rep wire.Report) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range sp.services {
		st, _ := wire.ServiceHealth(rep, s.spec.Name)
		if st == catalog.HealthHealthy || st == catalog.HealthDegraded {
			continue
		}
		if st.Rank() > s.health.Rank() {
			return false
		}
	}
	return true
}

// publish makes inst's routes the plugin's, all services at once.
func (m *Manager) publish(sp *supervised, inst *instance, log *slog.Logger) {
	var errs []string
	for _, e := range inst.checked.Stray {
		errs = append(errs, e.Error())
		log.Warn("plugin returned a route for no service", "error", e)
	}
	var notes []string
	for _, n := range inst.notes {
		text := n.Text
		if n.Service != "" {
			text = n.Service + ": " + text
		}
		notes = append(notes, text)
		log.Info("plugin note", "service", n.Service, "note", n.Text)
	}
	m.mu.Lock()
	for _, s := range sp.services {
		s.refused = inst.checked.Errors[s.spec.Name]
		s.routes = inst.checked.Routes[s.spec.Name]
		if s.refused != nil {
			errs = append(errs, "service "+s.spec.Name+": routes refused: "+s.refused.Error())
			log.Warn("routes refused", "service", s.spec.Name, "error", s.refused)
			s.health, s.message = catalog.HealthUnhealthy, "routes refused: "+s.refused.Error()
		}
	}
	sp.state, sp.pid, sp.version, sp.path = StateRunning, inst.pid, inst.desc.Version, inst.path
	sp.notes = notes
	if len(errs) > 0 {
		sp.lastErr = strings.Join(errs, "; ")
	}
	m.mu.Unlock()
	m.notify()
}

// setHealth records a health report for sp's services.
func (m *Manager) setHealth(sp *supervised, inst *instance, rep wire.Report) {
	inst.report = &rep
	changed := false
	m.mu.Lock()
	for _, s := range sp.services {
		st, msg := wire.ServiceHealth(rep, s.spec.Name)
		if s.refused != nil {
			st, msg = catalog.HealthUnhealthy, "routes refused: "+s.refused.Error()
		}
		if st != s.health || msg != s.message {
			if st != s.health {
				m.log.Info("service health", "service", s.spec.Name, "plugin", sp.name, "health", st, "message", msg)
			}
			s.health, s.message, changed = st, msg, true
		}
	}
	m.mu.Unlock()
	if changed {
		m.notify()
	}
}

// setState records the plugin's state; when it is not running its
// services' health is unknown, with msg. Routes are kept: they describe
// upstreams, which do not need the plugin to serve.
func (m *Manager) setState(sp *supervised, st State, msg string) {
	changed := false
	m.mu.Lock()
	sp.state = st
	if st != StateRunning {
		sp.pid = 0
		for _, s := range sp.services {
			if s.health != catalog.HealthUnknown || s.message != msg {
				s.health, s.message, changed = catalog.HealthUnknown, msg, true
			}
		}
	}
	m.mu.Unlock()
	if changed {
		m.notify()
	}
}

func (m *Manager) recordErr(sp *supervised, err error) {
	m.mu.Lock()
	sp.lastErr = err.Error()
	m.mu.Unlock()
}

// noMesh answers plugins' callbacks when the daemon gave no MeshInfo.
type noMesh struct{}

func (noMesh) Bootures(context.Context) ([]catalog.Booture, error) { return nil, nil }
func (noMesh) Services(context.Context) ([]catalog.Service, error) { return nil, nil }
