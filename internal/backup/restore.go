package backup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/booture/booture/internal/store"
)

// ErrOtherIdentity: the state directory holds another booture.
var ErrOtherIdentity = errors.New("the state directory holds another booture")

// ErrRunning: a daemon has the state directory open.
var ErrRunning = errors.New("bootured is running on this state directory: stop it first")

// daemonLock is the file the running daemon's member registry keeps
// locked (members.Open): holding it proves no daemon uses the directory.
const daemonLock = "members.json.lock"

// RestoreOptions tune Restore.
type RestoreOptions struct {
	// Force replaces a state directory that holds another booture.
	Force bool
}

// RestoreResult says what Restore did.
type RestoreResult struct {
	// Replaced is the public key of the booture that was there before
	// (Force), empty when none or the same.
	Replaced string
	// Removed are the state files of the former content that the backup
	// did not have.
	Removed []string
}

// Restore writes b into stateDir (created 0700 when missing). It refuses
// while a daemon uses the directory, and when the directory holds another
// booture unless opts.Force. Every check runs before the first write; each
// file is replaced atomically, the private key last, so an interrupted
// restore leaves a directory the daemon refuses to start on (its mesh state
// and key disagree) rather than a mix it would run with: run it again.
func Restore(b *Bundle, stateDir string, opts RestoreOptions) (RestoreResult, error) {
	var res RestoreResult
	if err := b.Validate(); err != nil {
		return res, err
	}
	if err := store.EnsureDir(stateDir, 0o700); err != nil {
		return res, err
	}
	unlock, err := lockState(stateDir)
	if err != nil {
		return res, err
	}
	defer unlock()

	old, err := os.ReadFile(filepath.Join(stateDir, KeyFile))
	switch {
	case err == nil:
		oldPub, perr := PublicKeyOf(old)
		clear(old)
		if perr != nil {
			oldPub = "(unreadable key)"
		}
		if oldPub != b.PublicKey {
			if !opts.Force {
				return res, fmt.Errorf("%w (public key %s), not the one of this backup (%s): restoring would replace it; add --force if that is what you want", ErrOtherIdentity, oldPub, b.PublicKey)
			}
			res.Replaced = oldPub
		}
	case !errors.Is(err, fs.ErrNotExist):
		return res, fmt.Errorf("reading the current key: %w", err)
	}
	present, err := stateFiles(stateDir)
	if err != nil {
		return res, err
	}
	names := b.Names()
	// The key last: see above.
	slices.SortStableFunc(names, func(x, y string) int {
		switch {
		case x == KeyFile:
			return 1
		case y == KeyFile:
			return -1
		}
		return 0
	})
	for _, name := range names {
		p := filepath.Join(stateDir, filepath.FromSlash(name))
		if err := store.EnsureDir(filepath.Dir(p), 0o700); err != nil {
			return res, err
		}
		if err := store.WriteFile(p, b.Files[name], 0o600); err != nil {
			return res, fmt.Errorf("restoring %s: %w", name, err)
		}
	}
	for _, name := range present {
		if _, ok := b.Files[name]; ok {
			continue
		}
		if err := os.Remove(filepath.Join(stateDir, filepath.FromSlash(name))); err != nil {
			return res, fmt.Errorf("removing %s, which the backup does not have: %w", name, err)
		}
		res.Removed = append(res.Removed, name)
	}
	return res, nil
}

// lockState takes the daemon's lock on stateDir, failing with ErrRunning
// when a daemon holds it.
func lockState(stateDir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(stateDir, daemonLock), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking the state directory: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, ErrRunning
		}
		return nil, fmt.Errorf("locking the state directory: %w", err)
	}
	return func() { f.Close() }, nil
}

// stateFiles lists the files of stateDir a backup includes (see Included),
// as slash paths relative to it.
func stateFiles(stateDir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(stateDir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(stateDir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if !Included(rel) {
			if de.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if de.Type().IsRegular() {
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", stateDir, err)
	}
	return out, nil
}

// ReadStateFiles reads the files of stateDir a backup includes. The daemon
// uses it for the files it has no in-memory snapshot of; each file is
// replaced atomically by its writer, so each read is one whole version.
func ReadStateFiles(stateDir string) (map[string][]byte, error) {
	names, err := stateFiles(stateDir)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(names))
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(stateDir, filepath.FromSlash(n)))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", n, err)
		}
		out[n] = data
	}
	return out, nil
}

// Describe is a one-line summary of b for the admin.
func (b *Bundle) Describe() string {
	var s strings.Builder
	fmt.Fprintf(&s, "booture %s (key %s, site %d, %d member", b.Name, b.PublicKey, b.Site, b.Members)
	if b.Members != 1 {
		s.WriteString("s")
	}
	fmt.Fprintf(&s, "), backed up %s", b.Created.UTC().Format("2006-01-02 15:04 UTC"))
	return s.String()
}
