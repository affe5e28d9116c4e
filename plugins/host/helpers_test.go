package host

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/booture/booture/catalog"
)

// testBin is the test plugin, built once by TestMain.
var testBin string

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		runChild() // never returns
	}
	dir, err := os.MkdirTemp("", "booture-host-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testBin = filepath.Join(dir, "testplugin")
	out, err := exec.Command("go", "build", "-o", testBin, "./testdata/testplugin").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building test plugin: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testUser is who the tests' plugins run as: nobody when the tests run as
// root (as the daemon runs them by default), else the tests' own user.
func testUser() *User {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := LookupUser("nobody")
	if err != nil {
		return nil
	}
	return u
}

// sharedDir returns a folder the plugins (run as testUser) may read and
// write: a plugin reads only what its user may.
func sharedDir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	for dir, mode := range map[string]os.FileMode{filepath.Dir(d): 0o711, d: 0o777} {
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// fastTiming keeps tests quick; every wait in tests is bounded separately.
func fastTiming() Timing {
	return Timing{
		StartTimeout:     2 * time.Second,
		CallTimeout:      time.Second,
		ConfigureTimeout: 2 * time.Second,
		HealthInterval:   100 * time.Millisecond,
		BackoffMin:       50 * time.Millisecond,
		BackoffMax:       400 * time.Millisecond,
		MaxFailures:      3,
		StableAfter:      time.Minute,
		ReloadTimeout:    10 * time.Second,
		DrainDelay:       300 * time.Millisecond,
	}
}

// pluginDir returns a directory holding the test plugin under each name
// (booture-plugin-NAME).
func pluginDir(t testing.TB, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		copyFile(t, testBin, filepath.Join(dir, BinaryPrefix+n), 0o755)
	}
	return dir
}

func copyFile(t testing.TB, src, dst string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		t.Fatal(err)
	}
	// Whatever the umask: the daemon refuses group-writable binaries.
	if err := os.Chmod(dst, mode); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a log sink tests can read while the manager writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type harness struct {
	t      *testing.T
	m      *Manager
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// start creates a manager and runs it until the test ends.
func start(t *testing.T, opts Options) *harness {
	t.Helper()
	logs := &syncBuffer{}
	if opts.StateDir == "" {
		opts.StateDir = t.TempDir()
	}
	if opts.Mesh.Booture == "" {
		opts.Mesh.Booture = "diois"
	}
	if opts.SocketDir == "" {
		// Short and private to the test (t.TempDir paths are long).
		dir, err := os.MkdirTemp("", "bp")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		opts.SocketDir = dir
	}
	if opts.User == nil {
		opts.User = testUser()
	}
	if opts.Timing == (Timing{}) {
		opts.Timing = fastTiming()
	}
	opts.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, m: m, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- m.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

// stop ends Run and checks that no plugin process is left.
func (h *harness) stop() { h.once.Do(h.stopOnce) }

func (h *harness) stopOnce() {
	var pids []int
	for _, p := range h.m.List() {
		if p.PID != 0 {
			pids = append(pids, p.PID)
		}
	}
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(20 * time.Second):
		h.t.Errorf("Run did not return within 20s of cancel")
	}
	for _, pid := range pids {
		if alive(pid) {
			h.t.Errorf("plugin pid %d still alive after Run returned", pid)
		}
	}
}

// testWriter sends logs to t.Log, so they show with -v or on failure.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	defer func() { recover() }() // the test may be over (late log lines)
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (h *harness) plugin(name string) PluginInfo {
	for _, p := range h.m.List() {
		if p.Name == name {
			return p
		}
	}
	return PluginInfo{}
}

func (h *harness) service(name string) catalog.Service {
	for _, s := range h.m.Services() {
		if s.Name == name {
			return s
		}
	}
	return catalog.Service{}
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// upstream is a fake local service.
func upstream(t *testing.T, body string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}))
	t.Cleanup(s.Close)
	return s
}

func routesOf(rs []catalog.Route, service string) []catalog.Route {
	var out []catalog.Route
	for _, r := range rs {
		if r.Service == service {
			out = append(out, r)
		}
	}
	return out
}
