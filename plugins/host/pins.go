package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/booture/booture/internal/names"
	"github.com/booture/booture/internal/store"
)

// BinaryPrefix starts the file name of every plugin binary.
const BinaryPrefix = "booture-plugin-"

// maxBinarySize bounds what Install copies.
const maxBinarySize = 512 << 20

// ErrChecksumMismatch is wrapped by the error of a plugin whose binary no
// longer matches its pinned SHA-256.
var ErrChecksumMismatch = errors.New("binary does not match its pinned sha256")

// ErrNotFound is wrapped by the error of a plugin with no binary.
var ErrNotFound = errors.New("plugin not found")

// ErrUntrusted is wrapped by the error of a binary that a user other than
// root could have written: the daemon refuses to install or pin it.
var ErrUntrusted = errors.New("only a file that root owns and alone may write can be a plugin")

// checkTrusted refuses a binary that someone other than root may have
// written: one owned by another user, or writable by its group or by
// others. The daemon runs what it installs and pins, and members of the
// admin socket's group may ask it to install any path: without this check
// they could have root run a file of theirs. The daemon's own user stands
// for root when the daemon does not run as root (tests, a user's trial).
func checkTrusted(fi os.FileInfo) error {
	if uid, ok := fileOwner(fi); ok && uid != 0 && uid != os.Geteuid() {
		return fmt.Errorf("owned by uid %d, not root; %w", uid, ErrUntrusted)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("writable by group or others (mode %04o); %w", perm, ErrUntrusted)
	}
	return nil
}

// pin is what the manager trusts about a plugin's binary.
type pin struct {
	Path      string    `json:"path"`
	SHA256    string    `json:"sha256"`
	PinnedAt  time.Time `json:"pinned_at"`
	Installed bool      `json:"installed"` // copied by Install (else pinned on first use)
}

type pinsFile struct {
	Version int            `json:"version"`
	Plugins map[string]pin `json:"plugins"`
}

func (m *Manager) loadPins() error {
	var f pinsFile
	err := store.ReadJSON(m.pinsPath, &f)
	switch {
	case store.IsNotExist(err):
		m.pins = map[string]pin{}
		return nil
	case err != nil:
		return err
	case f.Version > 1:
		return fmt.Errorf("reading %s: version %d was written by a newer booture (this one reads version 1): upgrade booture", m.pinsPath, f.Version)
	case f.Version != 1:
		return fmt.Errorf("reading %s: unknown version %d", m.pinsPath, f.Version)
	}
	if f.Plugins == nil {
		f.Plugins = map[string]pin{}
	}
	m.pins = f.Plugins
	return nil
}

// savePinsLocked writes the pins file (0600, atomically). m.mu is held.
func (m *Manager) savePinsLocked() error {
	return store.WriteJSON(m.pinsPath, pinsFile{Version: 1, Plugins: m.pins}, 0o600)
}

// discover lists the plugin binaries found in the managed directory and
// then in Options.PluginDirs; the first found of a name wins.
func (m *Manager) discover() map[string]string {
	found := map[string]string{}
	for _, dir := range append([]string{m.binDir}, m.opts.PluginDirs...) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue // a missing directory holds no plugin
		}
		for _, e := range entries {
			name, ok := strings.CutPrefix(e.Name(), BinaryPrefix)
			if !ok || names.Check(name) != nil || found[name] != "" {
				continue
			}
			p := filepath.Join(dir, e.Name())
			if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
				continue
			}
			found[name] = p
		}
	}
	return found
}

// resolve returns the binary to start for plugin name and its pinned
// checksum. A binary found in a plugin directory without a pin is pinned
// on first use; later changes to it are then refused.
func (m *Manager) resolve(name string) (path string, sum []byte, err error) {
	m.mu.Lock()
	p, ok := m.pins[name]
	m.mu.Unlock()
	if !ok {
		path := m.discover()[name]
		if path == "" {
			dirs := strings.Join(append([]string{m.binDir}, m.opts.PluginDirs...), ", ")
			return "", nil, fmt.Errorf("%w: no %s%s in %s; install it with `booture plugin install PATH`", ErrNotFound, BinaryPrefix, name, dirs)
		}
		hexSum, err := trustedSHA256(path)
		if err != nil {
			return "", nil, fmt.Errorf("refusing to pin %s on first use: %w", path, err)
		}
		p = pin{Path: path, SHA256: hexSum, PinnedAt: time.Now().UTC()}
		m.mu.Lock()
		if cur, ok := m.pins[name]; ok {
			p = cur // pinned meanwhile (Install)
		} else {
			m.pins[name] = p
			if err := m.savePinsLocked(); err != nil {
				delete(m.pins, name)
				m.mu.Unlock()
				return "", nil, fmt.Errorf("pinning %s: %w", path, err)
			}
			m.log.Warn("plugin pinned on first use", "plugin", name, "path", path, "sha256", p.SHA256)
		}
		m.mu.Unlock()
	}
	want, err := hex.DecodeString(p.SHA256)
	if err != nil || len(want) != sha256.Size {
		return "", nil, fmt.Errorf("pin of %s: bad sha256 %q", name, p.SHA256)
	}
	// go-plugin checks the pin again right before exec (SecureConfig); this
	// check only gives the clearer message.
	got, err := fileSHA256(p.Path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", nil, fmt.Errorf("%w: pinned binary %s is missing; reinstall it with `booture plugin install PATH`", ErrNotFound, p.Path)
		}
		return "", nil, err
	}
	if got != p.SHA256 {
		return "", nil, fmt.Errorf("%w: %s has sha256 %s, pinned %s; refusing to start it (reinstall with `booture plugin install PATH`)", ErrChecksumMismatch, p.Path, got, p.SHA256)
	}
	return p.Path, want, nil
}

// trustedSHA256 hashes the file at path after checking, on the same open
// file, that only root may write it (checkTrusted).
func trustedSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	if err := checkTrusted(fi); err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Install copies the plugin binary at path (named booture-plugin-NAME)
// into the managed plugin directory and pins its SHA-256, after checking
// that only root may write it (checkTrusted), that it speaks the protocol
// and that it calls itself NAME. A running plugin keeps
// its old binary until Reload.
func (m *Manager) Install(ctx context.Context, path string) (PluginInfo, error) {
	base := filepath.Base(path)
	name, ok := strings.CutPrefix(base, BinaryPrefix)
	if !ok {
		return PluginInfo{}, fmt.Errorf("installing %s: file name must be %sNAME", path, BinaryPrefix)
	}
	if err := names.Check(name); err != nil {
		return PluginInfo{}, fmt.Errorf("installing %s: plugin name: %w", path, err)
	}
	data, err := readBinary(path)
	if err != nil {
		return PluginInfo{}, fmt.Errorf("installing %s: %w", path, err)
	}
	m.installMu.Lock()
	defer m.installMu.Unlock()
	if err := store.EnsureDir(m.binDir, 0o755); err != nil {
		return PluginInfo{}, fmt.Errorf("installing %s: %w", path, err)
	}
	sum := sha256.Sum256(data)
	final := filepath.Join(m.binDir, base)
	staging := filepath.Join(m.binDir, ".staging-"+base)
	if err := store.WriteFile(staging, data, 0o755); err != nil {
		return PluginInfo{}, fmt.Errorf("installing %s: %w", path, err)
	}
	defer os.Remove(staging)
	desc, err := m.probe(ctx, name, staging, sum[:])
	if err != nil {
		return PluginInfo{}, fmt.Errorf("installing %s: %w", path, err)
	}
	// The running plugin's process keeps the replaced file's inode.
	if err := os.Rename(staging, final); err != nil {
		return PluginInfo{}, fmt.Errorf("installing %s: %w", path, err)
	}
	hexSum := hex.EncodeToString(sum[:])
	m.mu.Lock()
	old, hadPin := m.pins[name]
	m.pins[name] = pin{Path: final, SHA256: hexSum, PinnedAt: time.Now().UTC(), Installed: true}
	if err := m.savePinsLocked(); err != nil {
		if hadPin {
			m.pins[name] = old
		} else {
			delete(m.pins, name)
		}
		m.mu.Unlock()
		return PluginInfo{}, fmt.Errorf("installing %s: pinning: %w", path, err)
	}
	m.mu.Unlock()
	m.log.Info("plugin installed", "plugin", name, "version", desc.Version, "path", final, "sha256", hexSum)
	for _, pi := range m.List() {
		if pi.Name == name {
			if pi.Version == "" || pi.State != StateRunning {
				pi.Version = desc.Version // of the new binary, not the running one
			}
			return pi, nil
		}
	}
	return PluginInfo{Name: name, Path: final, SHA256: hexSum, Version: desc.Version}, nil
}

func readBinary(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if err := checkTrusted(fi); err != nil {
		return nil, err
	}
	if fi.Size() > maxBinarySize {
		return nil, fmt.Errorf("larger than %d MiB", maxBinarySize>>20)
	}
	return io.ReadAll(io.LimitReader(f, maxBinarySize+1))
}

// knownNames lists every plugin name the manager knows of: pinned,
// discovered or used by a service.
func (m *Manager) knownNamesLocked(discovered map[string]string) []string {
	set := map[string]bool{}
	for n := range m.pins {
		set[n] = true
	}
	for n := range discovered {
		set[n] = true
	}
	for n := range m.plugins {
		set[n] = true
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
