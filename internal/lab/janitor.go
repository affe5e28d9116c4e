package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RunDir holds one file per live lab, named after its id, with the pid and
// start time of the process that made it and the lab's directory. The
// janitor removes the leftovers of labs whose process is gone.
const RunDir = "/run/booture-lab"

func register() (string, error) {
	if err := os.MkdirAll(RunDir, 0o700); err != nil {
		return "", fmt.Errorf("lab registry: %w", err)
	}
	for range 100 {
		id := newID()
		f, err := os.OpenFile(filepath.Join(RunDir, id), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("lab registry: %w", err)
		}
		fmt.Fprintf(f, "%d %d -\n", os.Getpid(), procStart(os.Getpid()))
		f.Close()
		return id, nil
	}
	return "", errors.New("lab registry: no free id")
}

func writeRegistration(id, dir string) error {
	return os.WriteFile(filepath.Join(RunDir, id), fmt.Appendf(nil, "%d %d %s\n", os.Getpid(), procStart(os.Getpid()), dir), 0o600)
}

func unregister(id string) { os.Remove(filepath.Join(RunDir, id)) }

// procStart returns the start time of process pid (clock ticks since boot),
// or 0 if there is no such process.
func procStart(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// Fields after the command: state is field 3 of stat, starttime 22.
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

var janitorOnce sync.Once

// Janitor removes, once per process, what labs of processes that are gone
// (a crash, a test binary killed on timeout) left behind: their processes,
// namespaces, resolver files, WireGuard sockets and directories. Labs of
// live processes, and anything not registered in RunDir, are left alone.
func Janitor(logf func(format string, args ...any)) {
	janitorOnce.Do(func() { janitor(logf) })
}

func janitor(logf func(format string, args ...any)) {
	for _, reg := range registrations() {
		if reg.kept || reg.alive() {
			continue
		}
		gone := cleanupLab(reg)
		logf("lab janitor: removed leftovers of lab %s (process %d is gone): namespaces %v", reg.id, reg.pid, gone)
	}
}

// CleanKept removes the labs that were kept (see Lab.Keep), with their
// processes, namespaces and files, and returns their ids.
func CleanKept(logf func(format string, args ...any)) []string {
	var ids []string
	for _, reg := range registrations() {
		if !reg.kept {
			continue
		}
		gone := cleanupLab(reg)
		logf("removed lab %s: namespaces %v, directory %s", reg.id, gone, reg.dir)
		ids = append(ids, reg.id)
	}
	return ids
}

// registration is a file of RunDir.
type registration struct {
	id    string
	pid   int
	start uint64
	dir   string
	kept  bool
}

func (r registration) alive() bool {
	return r.pid > 0 && r.start != 0 && procStart(r.pid) == r.start
}

func registrations() []registration {
	entries, err := os.ReadDir(RunDir)
	if err != nil {
		return nil
	}
	var out []registration
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(RunDir, e.Name()))
		if err != nil {
			continue
		}
		r := registration{id: e.Name()}
		var mark string
		fmt.Sscan(string(b), &r.pid, &r.start, &r.dir, &mark)
		r.kept = mark == "keep"
		out = append(out, r)
	}
	return out
}

// cleanupLab removes what a registered lab left and returns the
// namespaces it deleted.
func cleanupLab(reg registration) []string {
	var gone []string
	r := run(context.Background(), 10*time.Second, nil, "ip", "netns", "list")
	for _, l := range strings.Split(r.Stdout, "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], "bt"+reg.id) {
			removeNS(f[0])
			gone = append(gone, f[0])
		}
	}
	stale, _ := filepath.Glob(filepath.Join("/etc/netns", "bt"+reg.id+"*"))
	for _, s := range stale {
		os.RemoveAll(s)
	}
	removeSockets(reg.id)
	if reg.dir != "" && reg.dir != "-" && strings.HasPrefix(filepath.Base(reg.dir), "bt"+reg.id+"-") {
		os.RemoveAll(reg.dir)
	}
	unregister(reg.id)
	return gone
}
