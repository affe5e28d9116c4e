package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Default programs every lab needs.
var defaultPackages = []string{"./cmd/bootured", "./cmd/booture"}

// EnvBin names a directory holding already built binaries (bootured,
// booture, ...): when set, Build uses them instead of building.
const EnvBin = "BOOTURE_LAB_BIN"

// Binaries is a directory of built programs.
type Binaries struct {
	Dir string
}

// Path returns the path of program name (e.g. "bootured").
func (b *Binaries) Path(name string) string { return filepath.Join(b.Dir, name) }

var build struct {
	mu    sync.Mutex
	dir   string
	owned bool            // dir is ours to delete
	done  map[string]bool // packages built into dir
}

// ModuleRoot returns the directory of the booture module's go.mod, as `go
// env GOMOD` finds it from the current directory.
func ModuleRoot(ctx context.Context) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("the go command is not in PATH: install Go (https://go.dev/dl/) or set " + EnvBin + " to a directory of built binaries")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the booture module: run from the repository (go env GOMOD is empty)")
	}
	return filepath.Dir(mod), nil
}

// Build builds bootured, booture and the extra packages (module-relative,
// e.g. "./cmd/booture-plugin-nextcloud") once per process into a temporary
// directory, and returns it. Later calls build only packages not built yet.
// RemoveBinaries deletes the directory.
func Build(ctx context.Context, extra ...string) (*Binaries, error) {
	build.mu.Lock()
	defer build.mu.Unlock()
	if d := os.Getenv(EnvBin); d != "" {
		for _, p := range append(append([]string(nil), defaultPackages...), extra...) {
			if _, err := os.Stat(filepath.Join(d, filepath.Base(p))); err != nil {
				return nil, fmt.Errorf("%s=%s: %w", EnvBin, d, err)
			}
		}
		return &Binaries{Dir: d}, nil
	}
	if build.done == nil {
		build.done = make(map[string]bool)
	}
	var todo []string
	for _, p := range append(append([]string(nil), defaultPackages...), extra...) {
		if !build.done[p] {
			todo = append(todo, p)
		}
	}
	if build.dir == "" {
		d, err := os.MkdirTemp("", "booture-lab-bin-")
		if err != nil {
			return nil, err
		}
		build.dir, build.owned = d, true
	}
	if len(todo) == 0 {
		return &Binaries{Dir: build.dir}, nil
	}
	root, err := ModuleRoot(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	args := append([]string{"build", "-o", build.dir + "/"}, todo...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // as the Makefile builds them
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	for _, p := range todo {
		build.done[p] = true
	}
	return &Binaries{Dir: build.dir}, nil
}

// RemoveBinaries deletes the directory Build made (not one given with
// BOOTURE_LAB_BIN). Call it when the process ends.
func RemoveBinaries() {
	build.mu.Lock()
	defer build.mu.Unlock()
	if build.owned && build.dir != "" {
		os.RemoveAll(build.dir)
	}
	build.dir, build.owned, build.done = "", false, nil
}
