package host

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/booture/booture/catalog"
	"github.com/booture/booture/internal/waitfor"
	"github.com/booture/booture/plugins/sdk"
)

func TestEnvLogLevelMatchesSDK(t *testing.T) {
	if envLogLevel != sdk.EnvLogLevel {
		t.Fatalf("envLogLevel %q != sdk.EnvLogLevel %q", envLogLevel, sdk.EnvLogLevel)
	}
}

func TestRunsConfiguresAndForwardsLogs(t *testing.T) {
	up := upstream(t, "alpha")
	h := start(t, Options{
		PluginDirs: []string{pluginDir(t, "alpha")},
		Specs: []catalog.Spec{
			{Plugin: "alpha", Upstream: up.URL, Access: catalog.AccessMesh, Settings: map[string]string{"callback": "true"}},
			{Plugin: "alpha", Name: "second", Upstream: up.URL},
		},
		Mesh:     Mesh{Booture: "diois", IPv4: netip.MustParseAddr("10.77.1.1")},
		MeshInfo: fakeMesh{},
	})
	waitfor.Cond(t, 10*time.Second, "alpha healthy", func() bool {
		return h.service("alpha").Health == catalog.HealthHealthy && h.service("second").Health == catalog.HealthHealthy
	})
	p := h.plugin("alpha")
	if p.State != StateRunning || p.PID == 0 || p.Version != "1.0.0" || len(p.SHA256) != 64 {
		t.Errorf("plugin info = %+v", p)
	}
	if got := strings.Join(p.Services, ","); got != "alpha,second" {
		t.Errorf("services = %s", got)
	}
	// The plugin called back into the host through the broker.
	if len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "diois=10.77.1.1,crest=10.77.2.1") {
		t.Errorf("notes = %q", p.Notes)
	}
	rs := h.m.Routes()
	if len(rs) != 2 || rs[0].Host != "alpha.diois.booture.internal" || rs[0].Upstream != up.URL || rs[0].Access != catalog.AccessMesh {
		t.Errorf("routes = %+v", rs)
	}
	s := h.service("alpha")
	if s.URL != "http://alpha.diois.booture.internal/" || s.Booture != "diois" {
		t.Errorf("service = %+v", s)
	}
	// The plugin's own log line reached the daemon's log, tagged.
	waitfor.Cond(t, 5*time.Second, "plugin log line", func() bool {
		return strings.Contains(h.logs.String(), "msg=configured plugin=alpha")
	})
	// Pins are private.
	fi, err := os.Stat(filepath.Join(h.m.opts.StateDir, "plugins", "pins.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("pins file: %v, mode %v", err, fi.Mode())
	}
	select {
	case <-h.m.Changes():
	default:
		t.Error("no change notification")
	}
}

func TestCrashIsRestartedWithBackoff(t *testing.T) {
	up := upstream(t, "ok")
	h := start(t, Options{
		PluginDirs: []string{pluginDir(t, "alpha")},
		Specs:      []catalog.Spec{{Plugin: "alpha", Upstream: up.URL}},
	})
	waitfor.Cond(t, 10*time.Second, "running", func() bool { return h.plugin("alpha").State == StateRunning })
	pid := h.plugin("alpha").PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Routes stay while the plugin restarts: the proxy does not need it.
	if len(h.m.Routes()) != 1 {
		t.Errorf("routes dropped after crash: %+v", h.m.Routes())
	}
	waitfor.Cond(t, 10*time.Second, "restart", func() bool {
		p := h.plugin("alpha")
		return p.State == StateRunning && p.PID != 0 && p.PID != pid && p.Restarts == 1
	})
	// The killed process's socket was cleaned up: only the new one is left.
	if socks, _ := filepath.Glob(filepath.Join(h.m.opts.SocketDir, "*", "plugin*")); len(socks) != 1 {
		t.Errorf("sockets left: %v", socks)
	}
	if p := h.plugin("alpha"); !strings.Contains(p.LastError, fmt.Sprintf("plugin process %d", pid)) {
		t.Errorf("last error = %q", p.LastError)
	}
	if !strings.Contains(h.logs.String(), "restarting with backoff") {
		t.Error("no backoff in the log")
	}
	if alive(pid) {
		t.Errorf("old pid %d alive", pid)
	}
}

func TestHangIsKilledAndRestarted(t *testing.T) {
	up := upstream(t, "ok")
	control := sharedDir(t)
	h := start(t, Options{
		PluginDirs: []string{pluginDir(t, "alpha")},
		Specs:      []catalog.Spec{{Plugin: "alpha", Upstream: up.URL, Settings: map[string]string{"control": control}}},
	})
	waitfor.Cond(t, 10*time.Second, "running", func() bool { return h.plugin("alpha").State == StateRunning })
	pid := h.plugin("alpha").PID
	if err := os.WriteFile(filepath.Join(control, "hang"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitfor.Cond(t, 15*time.Second, "restart after hang", func() bool {
		p := h.plugin("alpha")
		return p.State == StateRunning && p.PID != pid && p.Restarts == 1
	})
	if p := h.plugin("alpha"); !strings.Contains(p.LastError, "plugin hung: health did not answer") {
		t.Errorf("last error = %q", p.LastError)
	}
	waitfor.Cond(t, 5*time.Second, "hung process gone", func() bool { return !alive(pid) })
}

func TestCrashLoopEndsFailed(t *testing.T) {
	up := upstream(t, "ok")
	control := sharedDir(t)
	h := start(t, Options{
		PluginDirs: []string{pluginDir(t, "alpha", "crasher")},
		Specs: []catalog.Spec{
			{Plugin: "crasher", Upstream: up.URL},
			{Plugin: "alpha", Upstream: up.URL, Settings: map[string]string{"control": control}},
		},
	})
	waitfor.Cond(t, 20*time.Second, "crasher failed", func() bool { return h.plugin("crasher").State == StateFailed })
	p := h.plugin("crasher")
	if p.Restarts != fastTiming().MaxFailures-1 || !strings.Contains(p.LastError, "plugin exited before the handshake (exit status 3)") {
		t.Errorf("crasher = %+v", p)
	}
	if s := h.service("crasher"); s.Health != catalog.HealthUnknown || !strings.Contains(s.Message, "plugin failed") {
		t.Errorf("crasher service = %+v", s)
	}
	// No busy loop: it stays failed, with no more restarts, while alpha
	// is polled ten times more (a second at this timing, longer than the
	// longest restart delay).
	polls := func() int { b, _ := os.ReadFile(filepath.Join(control, "polls")); return bytes.Count(b, []byte("\n")) }
	before := polls()
	waitfor.Cond(t, 20*time.Second, "ten more health polls of alpha", func() bool { return polls() >= before+10 })
	if fastTiming().BackoffMax*2 > 10*fastTiming().HealthInterval {
		t.Fatal("ten health polls no longer outlast a restart delay: poll more")
	}
	if p2 := h.plugin("crasher"); p2.Restarts != p.Restarts || p2.State != StateFailed {
		t.Errorf("crasher moved on after failing: %+v", p2)
	}
	if s := h.service("alpha"); s.Health != catalog.HealthHealthy {
		waitfor.Cond(t, 5*time.Second, "alpha healthy", func() bool { return h.service("alpha").Health == catalog.HealthHealthy })
	}
	// Its stderr reached the log.
	if !strings.Contains(h.logs.String(), "crasher: giving up") {
		t.Error("crasher's stderr not in the log")
	}
}

func TestChecksumMismatchIsRefused(t *testing.T) {
	up := upstream(t, "ok")
	dir := pluginDir(t, "alpha")
	state := t.TempDir()
	// First run pins the binary (first use).
	h := start(t, Options{StateDir: state, PluginDirs: []string{dir}, Specs: []catalog.Spec{{Plugin: "alpha", Upstream: up.URL}}})
	waitfor.Cond(t, 10*time.Second, "running", func() bool { return h.plugin("alpha").State == StateRunning })
	h.stop()
	// Someone changes the binary.
	f, err := os.OpenFile(filepath.Join(dir, BinaryPrefix+"alpha"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("tampered"))
	f.Close()
	h = start(t, Options{StateDir: state, PluginDirs: []string{dir}, Specs: []catalog.Spec{{Plugin: "alpha", Upstream: up.URL}}})
	waitfor.Cond(t, 10*time.Second, "failed", func() bool { return h.plugin("alpha").State == StateFailed })
	p := h.plugin("alpha")
	if !strings.Contains(p.LastError, "does not match its pinned sha256") || !strings.Contains(p.LastError, "refusing to start it") {
		t.Errorf("last error = %q", p.LastError)
	}
	if p.Restarts != 0 {
		t.Errorf("a checksum mismatch was retried %d times", p.Restarts)
	}
}

func TestBadInputHurtsOnlyItsService(t *testing.T) {
	up := upstream(t, "ok")
	h := start(t, Options{
		PluginDirs: []string{pluginDir(t, "alpha", "beta", "garbage", "silent")},
		Specs: []catalog.Spec{
			{Plugin: "alpha", Upstream: up.URL},
			{Plugin: "alpha", Name: "badup", Upstream: up.URL, Settings: map[string]string{"mode": "bad-upstream"}},
			{Plugin: "beta", Name: "foreign", Upstream: up.URL, Settings: map[string]string{"mode": "foreign-host"}},
			{Plugin: "beta", Name: "thief", Upstream: up.URL, Settings: map[string]string{"mode": "other-service-host"}},
			{Plugin: "beta", Name: "dup", Upstream: up.URL, Settings: map[string]string{"mode": "duplicate"}},
			{Plugin: "beta", Name: "victim", Upstream: up.URL},
			{Plugin: "nosuch", Upstream: up.URL},
			{Plugin: "garbage", Upstream: up.URL},
			{Plugin: "silent", Upstream: up.URL},
			{Plugin: "alpha", Name: "Bad_Name", Upstream: up.URL},
			{Plugin: "alpha", Name: "alpha", Upstream: up.URL},
			{Plugin: "alpha", Name: "badspec", Upstream: "ftp://x"},
		},
	})
	waitfor.Cond(t, 15*time.Second, "every plugin settled", func() bool {
		return h.plugin("alpha").State == StateRunning && h.plugin("beta").State == StateRunning &&
			h.plugin("nosuch").State == StateFailed && h.plugin("garbage").LastError != "" &&
			h.plugin("silent").LastError != ""
	})
	for _, good := range []string{"alpha", "victim"} {
		waitfor.Cond(t, 5*time.Second, good+" healthy", func() bool { return h.service(good).Health == catalog.HealthHealthy })
		if rs := routesOf(h.m.Routes(), good); len(rs) != 1 || rs[0].Host != good+".diois.booture.internal" {
			t.Errorf("%s routes = %+v", good, rs)
		}
	}
	for svc, want := range map[string]string{
		"badup":    `scheme must be http or https`,
		"foreign":  `host "evil.example.com" is outside this booture's names`,
		"thief":    `host "victim.diois.booture.internal" is not the service's`,
		"dup":      `duplicate route`,
		"nosuch":   `no booture-plugin-nosuch in`,
		"garbage":  `plugin printed "hello from a careless plugin" on stdout instead of the handshake`,
		"silent":   `plugin did not complete the handshake within 2s`,
		"Bad_Name": `only a-z, 0-9 and '-' are allowed`,
		"badspec":  `scheme must be http or https`,
	} {
		s := h.service(svc)
		if s.Health == catalog.HealthHealthy || !strings.Contains(s.Message, want) && !strings.Contains(h.pluginErr(svc), want) {
			t.Errorf("service %s: health %s, message %q, plugin error %q; want mention of %q", svc, s.Health, s.Message, h.pluginErr(svc), want)
		}
		if len(routesOf(h.m.Routes(), svc)) != 0 {
			t.Errorf("service %s has routes", svc)
		}
	}
	// The second declaration of "alpha" is refused, not the first.
	if got := h.m.Services()[10]; got.Health != catalog.HealthUnhealthy || !strings.Contains(got.Message, "declared twice") {
		t.Errorf("duplicate declaration = %+v", got)
	}
}

// pluginErr is the LastError of the plugin serving service svc.
func (h *harness) pluginErr(svc string) string {
	for _, p := range h.m.List() {
		for _, s := range p.Services {
			if s == svc {
				return p.LastError
			}
		}
	}
	return ""
}

func TestInstall(t *testing.T) {
	h := start(t, Options{})
	ctx := context.Background()
	src := pluginDir(t, "web", "liar")
	info, err := h.m.Install(ctx, filepath.Join(src, BinaryPrefix+"web"))
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(h.m.opts.StateDir, "plugins", "bin", BinaryPrefix+"web")
	if info.Path != want || info.Version != "1.0.0" || info.State != StateStopped || len(info.SHA256) != 64 {
		t.Errorf("info = %+v", info)
	}
	if _, err := h.m.Install(ctx, filepath.Join(src, BinaryPrefix+"liar")); err == nil || !strings.Contains(err.Error(), `describes itself as "someone-else"`) {
		t.Errorf("liar: %v", err)
	}
	notPlugin := filepath.Join(t.TempDir(), BinaryPrefix+"true")
	copyFile(t, "/bin/true", notPlugin, 0o755)
	if _, err := h.m.Install(ctx, notPlugin); err == nil || !strings.Contains(err.Error(), "plugin exited before the handshake (exit status 0)") {
		t.Errorf("not a plugin: %v", err)
	}
	if _, err := h.m.Install(ctx, "/bin/true"); err == nil || !strings.Contains(err.Error(), "file name must be booture-plugin-NAME") {
		t.Errorf("bad name: %v", err)
	}
	names := map[string]bool{}
	for _, p := range h.m.List() {
		names[p.Name] = true
	}
	if !names["web"] || names["liar"] || names["true"] {
		t.Errorf("list = %v", names)
	}
	if err := h.m.Reload(ctx, "web"); err == nil {
		t.Error("reload of a plugin no service uses succeeded")
	}
}

// TestInstallRefusesFilesOthersMayWrite is a member of the admin socket's
// group asking the root daemon to install a binary of their own: refused,
// before it is run, whether others may write it or another user owns it.
func TestInstallRefusesFilesOthersMayWrite(t *testing.T) {
	h := start(t, Options{})
	ctx := context.Background()
	for _, mode := range []os.FileMode{0o775, 0o757, 0o777} {
		src := filepath.Join(t.TempDir(), BinaryPrefix+"web")
		copyFile(t, testBin, src, mode)
		_, err := h.m.Install(ctx, src)
		if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "writable by group or others") {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Log("not root: the file owner check is not tested")
	} else {
		src := filepath.Join(t.TempDir(), BinaryPrefix+"web")
		copyFile(t, testBin, src, 0o755)
		if err := os.Chown(src, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		_, err := h.m.Install(ctx, src)
		if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "owned by uid 65534, not root") {
			t.Errorf("owned by 65534: %v", err)
		}
	}
	if p := h.plugin("web"); p.SHA256 != "" {
		t.Errorf("an untrusted binary was pinned: %+v", p)
	}
	// The same binary, root's and not writable by others, installs.
	src := filepath.Join(t.TempDir(), BinaryPrefix+"web")
	copyFile(t, testBin, src, 0o755)
	if _, err := h.m.Install(ctx, src); err != nil {
		t.Fatal(err)
	}
}

// TestPinOnFirstUseRefusesFilesOthersMayWrite puts a binary that others
// may write (or that another user owns) in a plugin directory: it is
// neither pinned nor run, with a one-line error saying why.
func TestPinOnFirstUseRefusesFilesOthersMayWrite(t *testing.T) {
	up := upstream(t, "ok")
	cases := map[string]func(path string){
		"writable by group or others (mode 0777)": func(p string) {
			if err := os.Chmod(p, 0o777); err != nil {
				t.Fatal(err)
			}
		},
	}
	if os.Geteuid() == 0 {
		cases["owned by uid 65534, not root"] = func(p string) {
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}
	} else {
		t.Log("not root: the file owner check is not tested")
	}
	for want, spoil := range cases {
		dir := pluginDir(t, "alpha")
		bin := filepath.Join(dir, BinaryPrefix+"alpha")
		spoil(bin)
		h := start(t, Options{PluginDirs: []string{dir}, Specs: []catalog.Spec{{Plugin: "alpha", Upstream: up.URL}}})
		waitfor.Cond(t, 10*time.Second, "failed", func() bool { return h.plugin("alpha").State == StateFailed })
		p := h.plugin("alpha")
		if !strings.Contains(p.LastError, "refusing to pin "+bin+" on first use: "+want) || strings.Contains(p.LastError, "\n") {
			t.Errorf("last error = %q", p.LastError)
		}
		if p.SHA256 != "" || p.PID != 0 || p.Restarts != 0 {
			t.Errorf("untrusted binary: %+v", p)
		}
		h.stop()
	}
}

// TestReloadDropsNoRequest swaps a plugin that serves HTTP itself (the
// hardest case: its old process's upstream goes away) under a request
// loop through a proxy that reads Routes() per request, as the gateway
// does.
func TestReloadDropsNoRequest(t *testing.T) {
	dir := pluginDir(t, "web")
	h := start(t, Options{
		PluginDirs: []string{dir},
		Specs:      []catalog.Spec{{Plugin: "web", Settings: map[string]string{"serve": "true"}}},
	})
	waitfor.Cond(t, 10*time.Second, "web healthy", func() bool { return h.service("web").Health == catalog.HealthHealthy })
	oldPID := h.plugin("web").PID
	oldSum := h.plugin("web").SHA256

	proxy := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			for _, rt := range h.m.Routes() {
				if rt.Host == r.In.Host {
					u, _ := url.Parse(rt.Upstream)
					r.SetURL(u)
					return
				}
			}
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, err.Error(), http.StatusBadGateway)
		},
	})
	t.Cleanup(proxy.Close)

	var (
		ok, failed atomic.Int64
		mu         sync.Mutex
		seen       = map[string]int{}
		firstErr   atomic.Value
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 5 * time.Second}
			for i := 0; i < 20000; i++ { // bounded; stop ends it much sooner
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", proxy.URL+"/", nil)
				req.Host = "web.diois.booture.internal"
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %s", resp.StatusCode, body))
					continue
				}
				ok.Add(1)
				mu.Lock()
				seen[strings.TrimSpace(string(body))]++
				mu.Unlock()
			}
		}()
	}
	waitfor.Cond(t, 5*time.Second, "traffic", func() bool { return ok.Load() > 50 })

	// A new build: same code, other checksum.
	newBin := filepath.Join(t.TempDir(), BinaryPrefix+"web")
	copyFile(t, testBin, newBin, 0o755)
	f, _ := os.OpenFile(newBin, os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte("v2"))
	f.Close()
	ctx := context.Background()
	if _, err := h.m.Install(ctx, newBin); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Reload(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	p := h.plugin("web")
	if p.PID == oldPID || p.SHA256 == oldSum || p.State != StateRunning {
		t.Errorf("after reload: %+v (old pid %d)", p, oldPID)
	}
	waitfor.Cond(t, 10*time.Second, "old process stopped", func() bool { return !alive(oldPID) })
	before := ok.Load()
	waitfor.Cond(t, 5*time.Second, "traffic after the old process stopped", func() bool { return ok.Load() > before+50 })
	close(stop)
	wg.Wait()

	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed; first: %v", n, n+ok.Load(), firstErr.Load())
	}
	want := []string{fmt.Sprintf("pid %d", oldPID), fmt.Sprintf("pid %d", p.PID)}
	for _, w := range want {
		if seen[w] == 0 {
			t.Errorf("no answer from %q; seen %v", w, seen)
		}
	}
	t.Logf("%d requests, answers by process: %v", ok.Load(), seen)
}

func TestReloadKeepsOldOnBadBinary(t *testing.T) {
	up := upstream(t, "ok")
	h := start(t, Options{PluginDirs: []string{pluginDir(t, "alpha")}, Specs: []catalog.Spec{{Plugin: "alpha", Upstream: up.URL}}})
	waitfor.Cond(t, 10*time.Second, "running", func() bool { return h.plugin("alpha").State == StateRunning })
	pid := h.plugin("alpha").PID
	// Replace the pinned binary (writing to it in place fails while it
	// runs): the reload is refused, the old process keeps serving.
	path := h.plugin("alpha").Path
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(path+".new", append(data, 'x'), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	err := h.m.Reload(context.Background(), "alpha")
	if !errors.Is(err, ErrChecksumMismatch) {
		t.Errorf("reload error = %v", err)
	}
	if p := h.plugin("alpha"); p.PID != pid || p.State != StateRunning {
		t.Errorf("after failed reload: %+v", p)
	}
}

// childEnv makes the test binary run a plugin host (runChild).
const childEnv = "BOOTURE_HOST_TEST_CHILD"

// runChild runs a manager with two plugins, prints their pids, and waits
// to be killed.
func runChild() {
	var cfg struct{ State, Dir, Sockets string }
	if err := json.Unmarshal([]byte(os.Getenv(childEnv)), &cfg); err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	m, err := New(Options{
		StateDir: cfg.State, PluginDirs: []string{cfg.Dir}, Mesh: Mesh{Booture: "child"}, SocketDir: cfg.Sockets, User: testUser(),
		Specs:  []catalog.Spec{{Plugin: "alpha", Upstream: "http://127.0.0.1:9"}, {Plugin: "beta", Upstream: "http://127.0.0.1:9"}},
		Timing: fastTiming(), Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	go m.Run(context.Background())
	timeout := time.After(10 * time.Second)
	for {
		var pids []string
		for _, p := range m.List() {
			if p.State == StateRunning && p.PID != 0 {
				pids = append(pids, strconv.Itoa(p.PID))
			}
		}
		if len(pids) == 2 {
			fmt.Println("PIDS", strings.Join(pids, " "))
			break
		}
		select {
		case <-m.Changes(): // a plugin started (or changed): look again
		case <-timeout:
			fmt.Println("ERR plugins not running after 10 s")
			os.Exit(2)
		}
	}
	// Nothing to wait for: the parent kills us (long before a minute).
	time.Sleep(time.Minute)
	os.Exit(0)
}

func TestNoOrphansWhenHostIsKilled(t *testing.T) {
	// A killed host cannot remove its sockets: keep them in a directory
	// of ours (TMPDIR holds the host side's broker sockets).
	sockets, err := os.MkdirTemp("", "bp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockets) })
	if err := os.Chmod(sockets, 0o711); err != nil { // the plugin user passes through
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]string{"State": t.TempDir(), "Dir": pluginDir(t, "alpha", "beta"), "Sockets": filepath.Join(sockets, "p")})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(cfg), "TMPDIR="+sockets)
	cmd.Stderr = testWriter{t}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			if strings.HasPrefix(s.Text(), "PIDS ") || strings.HasPrefix(s.Text(), "ERR ") {
				line <- s.Text()
				return
			}
		}
		close(line)
	}()
	var pids []int
	select {
	case l := <-line:
		for _, f := range strings.Fields(strings.TrimPrefix(l, "PIDS ")) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("child said %q", l)
			}
			pids = append(pids, pid)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("child host did not start its plugins")
	}
	if len(pids) != 2 {
		t.Fatalf("pids = %v", pids)
	}
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("plugin %d not running", pid)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	waitfor.Cond(t, 10*time.Second, "plugins of the killed host to die", func() bool {
		for _, pid := range pids {
			if alive(pid) {
				return false
			}
		}
		return true
	})
}

type fakeMesh struct{}

func (fakeMesh) Bootures(context.Context) ([]catalog.Booture, error) {
	return []catalog.Booture{
		{Name: "diois", IPv4: netip.MustParseAddr("10.77.1.1")},
		{Name: "crest", IPv4: netip.MustParseAddr("10.77.2.1")},
	}, nil
}

func (fakeMesh) Services(context.Context) ([]catalog.Service, error) { return nil, nil }

// TestPluginRunsAsTheConfiguredUser: a plugin runs as the plugin user, not
// as the root daemon, even when that user may not enter the directory of
// its binary (the state directory is root's alone); it is still checked
// against its pin, and its socket directory is removed after it.
func TestPluginRunsAsTheConfiguredUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a process as another user")
	}
	u, err := LookupUser("nobody")
	if err != nil || u == nil {
		t.Skipf("no user nobody: %v", err)
	}
	dir := pluginDir(t, "alpha") // t.TempDir: 0700, root's
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	up := upstream(t, "ok")
	h := start(t, Options{User: u, PluginDirs: []string{dir}, Specs: []catalog.Spec{{Plugin: "alpha", Upstream: up.URL}}})
	waitfor.Cond(t, 10*time.Second, "alpha running", func() bool { return h.plugin("alpha").State == StateRunning })
	pid := h.plugin("alpha").PID
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := strconv.Itoa(int(u.UID)), strconv.Itoa(int(u.GID))
	for _, line := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		switch k {
		case "Uid":
			if !slices.Equal(f, []string{uid, uid, uid, uid}) {
				t.Errorf("plugin %s, want %s everywhere", line, uid)
			}
		case "Gid":
			if !slices.Equal(f, []string{gid, gid, gid, gid}) {
				t.Errorf("plugin %s, want %s everywhere", line, gid)
			}
		case "Groups":
			if slices.Contains(f, "0") {
				t.Errorf("plugin kept root's group: %s", line)
			}
		case "CapEff":
			if strings.Trim(strings.TrimSpace(v), "0") != "" {
				t.Errorf("plugin has capabilities: %s", line)
			}
		}
	}
	if exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); err != nil || exe != filepath.Join(dir, BinaryPrefix+"alpha") {
		t.Errorf("plugin runs %q (%v)", exe, err)
	}
	entries, _ := os.ReadDir(h.m.opts.SocketDir)
	if len(entries) != 1 {
		t.Fatalf("socket dir holds %d entries, want the plugin's own directory", len(entries))
	}
	if fi, err := os.Stat(filepath.Join(h.m.opts.SocketDir, entries[0].Name())); err != nil || fi.Sys().(*syscall.Stat_t).Uid != u.UID {
		t.Errorf("the plugin's socket directory is not the plugin user's: %v", err)
	}
	h.stop()
	if entries, _ := os.ReadDir(h.m.opts.SocketDir); len(entries) != 0 {
		t.Errorf("socket directories left after the plugin stopped: %v", entries)
	}
}

func TestLookupUser(t *testing.T) {
	if u, err := LookupUser("root"); err != nil || u != nil {
		t.Errorf("root: %+v, %v (want nil: no switch)", u, err)
	}
	if u, err := LookupUser("0"); err != nil || u != nil {
		t.Errorf("uid 0: %+v, %v", u, err)
	}
	if _, err := LookupUser("no-such-user-here"); err == nil {
		t.Error("an unknown user was accepted")
	}
	nobody, err := LookupUser("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	if byID, err := LookupUser(strconv.Itoa(int(nobody.UID))); err != nil || byID.UID != nobody.UID {
		t.Errorf("by uid: %+v, %v", byID, err)
	}
	def, err := LookupUser("")
	if err != nil || def == nil || def.Name != "booture-plugin" && def.Name != "nobody" {
		t.Errorf("default: %+v, %v", def, err)
	}
}
