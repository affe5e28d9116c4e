package members

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/booture/booture/internal/store"
	"github.com/booture/booture/key"
)

// FileMode is the mode of the members file and of its lock file.
const FileMode fs.FileMode = 0o600

// Registry is the persistent set of a booture's members. All its methods are
// safe for concurrent use. Readers (Get, List, MemberByKey, Site) see only
// changes that are already on disk.
type Registry struct {
	path       string
	log        *slog.Logger
	bootureKey func(key.PublicKey) (string, bool)
	unlock     func() error

	// Seams for tests: the durable write and the clock.
	writeFile func(path string, data []byte, perm fs.FileMode) error
	now       func() time.Time

	mu       sync.Mutex
	idle     sync.Cond // signalled when writing becomes false
	cur      *state    // the durable state; never mutated, replaced whole
	queue    []*op     // changes waiting for the next write
	writing  bool      // a goroutine is committing a batch
	closed   bool
	prevSite Site // site of the file at Open, if it differed
	moved    bool
}

// Option configures a Registry at Open.
type Option func(*Registry)

// WithLogger makes the registry log the few events its caller cannot see
// otherwise (members moved to a new site at Open, leftovers of an
// interrupted write removed, file mode tightened). Without it the registry
// logs nothing.
func WithLogger(l *slog.Logger) Option {
	return func(r *Registry) {
		if l != nil {
			r.log = l
		}
	}
}

// WithBootureKeys gives Add a way to refuse a public key that a booture of
// the mesh uses (this booture's own key included): lookup returns the
// booture's name and true for such a key. The other way round, the daemon
// checks a booture's key with MemberByKey.
// It is called without any lock of the registry held, so it may take the
// caller's own locks.
func WithBootureKeys(lookup func(key.PublicKey) (booture string, used bool)) Option {
	return func(r *Registry) { r.bootureKey = lookup }
}

// Open loads the members file at path (a missing file is an empty list; the
// file is created at the first change) and locks it for this Registry until
// Close, through the lock file path+".lock". The directory must exist. site is the booture's current site; when the file was written for
// another site (the daemon renumbered after a site conflict), Open moves
// every member to site keeping its host number, and saves that before it
// returns (PreviousSite then reports the old site).
//
// A file that cannot be read or trusted gives an error wrapping ErrCorrupt:
// Open never starts with an empty list over an existing file.
func Open(path string, site Site, opts ...Option) (*Registry, error) {
	if err := site.Validate(); err != nil {
		return nil, fmt.Errorf("opening members registry: %w", err)
	}
	r := &Registry{
		path:      path,
		log:       slog.New(slog.DiscardHandler),
		writeFile: store.WriteFile,
		now:       time.Now,
	}
	r.idle.L = &r.mu
	for _, o := range opts {
		o(r)
	}
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, fmt.Errorf("opening members registry: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			unlock()
		}
	}()
	r.removeLeftovers()

	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.cur = newState(site)
	case err != nil:
		return nil, fmt.Errorf("opening members registry: %w", err)
	default:
		st, err := decodeState(data)
		if err != nil {
			return nil, fmt.Errorf("opening members registry: %s: %w: %w", path, ErrCorrupt, err)
		}
		r.cur = st
		r.tightenMode()
		if st.site != site {
			next := st.moveTo(site)
			data, err := encodeState(next)
			if err == nil {
				err = r.writeFile(path, data, FileMode)
			}
			if err != nil {
				return nil, fmt.Errorf("opening members registry: moving members from site %s to %s: %w: %w", st.site, site, ErrNotSaved, err)
			}
			r.cur, r.prevSite, r.moved = next, st.site, true
			r.log.Info("members moved to the new site", "from", st.site.String(), "to", site.String(), "members", len(next.byName))
		}
	}
	r.unlock = unlock
	ok = true
	return r, nil
}

// removeLeftovers deletes temporary files of a write that a crash
// interrupted. Safe because the lock is held.
func (r *Registry) removeLeftovers() {
	pattern := filepath.Join(filepath.Dir(r.path), "."+filepath.Base(r.path)+".tmp-*")
	left, _ := filepath.Glob(pattern)
	for _, f := range left {
		if err := os.Remove(f); err == nil {
			r.log.Info("removed leftover of an interrupted write", "file", f)
		}
	}
}

func (r *Registry) tightenMode() {
	fi, err := os.Stat(r.path)
	if err != nil || fi.Mode().Perm()&^FileMode == 0 {
		return
	}
	if err := os.Chmod(r.path, FileMode); err != nil {
		r.log.Warn("members file is readable by others and its mode cannot be tightened", "file", r.path, "mode", fi.Mode().Perm().String(), "err", err)
		return
	}
	r.log.Warn("tightened mode of members file", "file", r.path, "from", fi.Mode().Perm().String(), "to", FileMode.String())
}

// Close waits for changes in progress to be written, then releases the
// file. Later changes fail with ErrClosed; Get and List keep answering from
// memory. Close is idempotent.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	for r.writing {
		r.idle.Wait()
	}
	r.mu.Unlock()
	if err := r.unlock(); err != nil {
		return fmt.Errorf("closing members registry: %w", err)
	}
	return nil
}

// Path returns the path of the members file.
func (r *Registry) Path() string { return r.path }

// Site returns the site the members' addresses are in.
func (r *Registry) Site() Site {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur.site
}

// PreviousSite returns the site the file was written for, and true, when
// Open moved the members to a new site.
func (r *Registry) PreviousSite() (Site, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.prevSite, r.moved
}

// Get returns the member named name, or an error wrapping ErrNotFound.
func (r *Registry) Get(name string) (Member, error) {
	r.mu.Lock()
	m, ok := r.cur.byName[name]
	r.mu.Unlock()
	if !ok {
		return Member{}, fmt.Errorf("member %.70q: %w", name, ErrNotFound)
	}
	return m, nil
}

// MemberByKey returns the member whose public key is key, if any. The
// daemon uses it to refuse a booture key that a member already has and to
// name the WireGuard peers it reports.
func (r *Registry) MemberByKey(pub key.PublicKey) (Member, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	name, ok := r.cur.byKey[pub]
	if !ok {
		return Member{}, false
	}
	return r.cur.byName[name], true
}

// List returns all members sorted by name.
func (r *Registry) List() []Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Member, len(r.cur.order))
	for i, name := range r.cur.order {
		out[i] = r.cur.byName[name]
	}
	return out
}

// Len returns the number of members.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.cur.byName)
}

// AddRequest describes a new member.
type AddRequest struct {
	// Name is the member's name, a DNS label unique in the registry.
	Name string
	// PublicKey is the member's WireGuard public key in base64, when the
	// member keeps its own private key. Empty: Add generates a key pair.
	PublicKey string
	// FullTunnel sends all the member's traffic through the booture.
	FullTunnel bool
	// Endpoint is the booture's endpoint written in the member's
	// configuration, recorded in Member.Issued (optional).
	Endpoint string
}

// Add adds a member with the lowest free host number of the site and
// returns it once it is on disk.
//
// When req.PublicKey is empty, Add generates the member's key pair and
// returns the private key: it is the only copy, kept nowhere by the
// registry, so the caller must hand it to the member now (in the rendered
// configuration) and then forget it. When req.PublicKey is given, the
// returned private key is nil.
//
// Errors say which check failed and wrap ErrInvalidName, ErrInvalidKey,
// ErrExists, ErrKeyInUse, ErrSiteFull, ErrNotSaved or ErrClosed.
func (r *Registry) Add(req AddRequest) (Member, *key.PrivateKey, error) {
	if err := CheckName(req.Name); err != nil {
		return Member{}, nil, fmt.Errorf("adding member: %w", err)
	}
	var priv key.PrivateKey
	var pub key.PublicKey
	defer func() { priv = key.PrivateKey{} }() // only the returned copy remains
	generated := req.PublicKey == ""
	if generated {
		var err error
		if priv, err = key.NewPrivateKey(); err != nil {
			return Member{}, nil, fmt.Errorf("adding member %q: generating key pair: %w", req.Name, err)
		}
		pub = priv.Public()
	} else {
		var err error
		if pub, err = ParsePublicKey(req.PublicKey); err != nil {
			return Member{}, nil, fmt.Errorf("adding member %q: %w", req.Name, err)
		}
	}
	if r.bootureKey != nil {
		if b, used := r.bootureKey(pub); used {
			return Member{}, nil, fmt.Errorf("adding member %q: %w by booture %q", req.Name, ErrKeyInUse, b)
		}
	}
	var added Member
	err := r.do(func(s *state) (bool, error) {
		if _, ok := s.byName[req.Name]; ok {
			return false, ErrExists
		}
		if other, ok := s.byKey[pub]; ok {
			return false, fmt.Errorf("%w by member %q", ErrKeyInUse, other)
		}
		n := s.freeHost()
		if n == 0 {
			return false, fmt.Errorf("%w: no address left for a new member (%d members)", ErrSiteFull, len(s.byName))
		}
		ip4, ip6 := s.site.Addrs(n)
		added = Member{
			Name:       req.Name,
			PublicKey:  pub,
			IPv4:       ip4,
			IPv6:       ip6,
			FullTunnel: req.FullTunnel,
			Created:    r.now().UTC().Truncate(time.Second),
			Issued:     issue(req.Endpoint, s.site),
		}
		s.put(added)
		return true, nil
	})
	if err != nil {
		return Member{}, nil, fmt.Errorf("adding member %q: %w", req.Name, err)
	}
	if !generated {
		return added, nil, nil
	}
	out := new(key.PrivateKey)
	*out = priv
	return added, out, nil
}

// Disable keeps the member and its addresses but takes away its access.
// Disabling a disabled member changes nothing.
func (r *Registry) Disable(name string) (Member, error) {
	m, err := r.setDisabled(name, true)
	if err != nil {
		return Member{}, fmt.Errorf("disabling member %.70q: %w", name, err)
	}
	return m, nil
}

// Enable gives a disabled member its access back, with the same addresses.
// Enabling an enabled member changes nothing.
func (r *Registry) Enable(name string) (Member, error) {
	m, err := r.setDisabled(name, false)
	if err != nil {
		return Member{}, fmt.Errorf("enabling member %.70q: %w", name, err)
	}
	return m, nil
}

func (r *Registry) setDisabled(name string, disabled bool) (Member, error) {
	var out Member
	err := r.do(func(s *state) (bool, error) {
		m, ok := s.byName[name]
		if !ok {
			return false, ErrNotFound
		}
		if m.Disabled == disabled {
			out = m
			return false, nil
		}
		m.Disabled = disabled
		s.put(m)
		out = m
		return true, nil
	})
	return out, err
}

// Remove deletes the member and returns it as it was (the daemon needs its
// key to drop the WireGuard peer). Its host number becomes free.
func (r *Registry) Remove(name string) (Member, error) {
	var out Member
	err := r.do(func(s *state) (bool, error) {
		m, ok := s.byName[name]
		if !ok {
			return false, ErrNotFound
		}
		s.del(name)
		out = m
		return true, nil
	})
	if err != nil {
		return Member{}, fmt.Errorf("removing member %.70q: %w", name, err)
	}
	return out, nil
}

// SetSite moves every member to site, keeping its host number (10.77.3.7
// becomes 10.77.9.7): the daemon calls it when its site changes after a
// site conflict. Members must then get a new configuration.
func (r *Registry) SetSite(site Site) error {
	if err := site.Validate(); err != nil {
		return fmt.Errorf("moving members: %w", err)
	}
	err := r.do(func(s *state) (bool, error) {
		if s.site == site {
			return false, nil
		}
		*s = *s.moveTo(site)
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("moving members to site %s: %w", site, err)
	}
	return nil
}

// op is one change waiting to be committed. apply checks the change against
// s and, only if it is valid, makes it on s; it reports whether s changed.
type op struct {
	apply func(s *state) (changed bool, err error)
	err   error
	lead  bool          // woken to commit the next batch
	wake  chan struct{} // capacity 1: at most one pending wake-up
}

// do runs apply as part of the next durable write and returns when that
// write is done (group commit): the first caller with nothing in progress
// becomes the leader, applies every queued change to a copy of the state,
// writes it, and publishes it only if the write succeeded. Callers that
// arrive meanwhile queue up; the leader wakes the first of them to commit
// the next batch, so no caller waits for more than its own batch and the
// one before it.
func (r *Registry) do(apply func(*state) (bool, error)) error {
	o := &op{apply: apply, wake: make(chan struct{}, 1)}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	r.queue = append(r.queue, o)
	if r.writing {
		r.mu.Unlock()
		<-o.wake // the send happens before this receive: o.lead and o.err are set
		if !o.lead {
			return o.err
		}
		r.mu.Lock()
	} else {
		r.writing = true
	}
	r.commitLocked()
	r.mu.Unlock()
	return o.err
}

// commitLocked commits the queued batch. r.mu is held on entry and exit but
// released while writing.
func (r *Registry) commitLocked() {
	batch := r.queue
	r.queue = nil
	next := r.cur.clone()
	var applied []*op
	changed := false
	for _, o := range batch {
		c, err := o.apply(next)
		if err != nil {
			o.err = err
			continue
		}
		changed = changed || c
		applied = append(applied, o)
	}
	if changed {
		data, err := encodeState(next)
		if err == nil {
			r.mu.Unlock()
			err = r.writeFile(r.path, data, FileMode)
			r.mu.Lock()
		}
		if err != nil {
			err = fmt.Errorf("%w: %w", ErrNotSaved, err)
			for _, o := range applied {
				o.err = err
			}
		} else {
			next.sortNames()
			r.cur = next
		}
	}
	for _, o := range batch {
		o.lead = false
		o.wake <- struct{}{}
	}
	if len(r.queue) > 0 {
		nl := r.queue[0]
		nl.lead = true
		nl.wake <- struct{}{}
		return
	}
	r.writing = false
	r.idle.Broadcast()
}

// state is one version of the member set. A committed state is never
// changed: commits work on a clone.
type state struct {
	site   Site
	byName map[string]Member
	byKey  map[key.PublicKey]string
	hosts  [256]string // member name by host number; "" is free
	order  []string    // names, sorted; set by sortNames before publishing
}

func newState(site Site) *state {
	return &state{site: site, byName: map[string]Member{}, byKey: map[key.PublicKey]string{}}
}

func (s *state) clone() *state {
	c := &state{
		site:   s.site,
		byName: make(map[string]Member, len(s.byName)+1),
		byKey:  make(map[key.PublicKey]string, len(s.byKey)+1),
		hosts:  s.hosts,
		order:  s.order, // shared: replaced, never changed in place
	}
	for k, v := range s.byName {
		c.byName[k] = v
	}
	for k, v := range s.byKey {
		c.byKey[k] = v
	}
	return c
}

// put adds or replaces m; m's name, key and host must not belong to another
// member.
func (s *state) put(m Member) {
	s.byName[m.Name] = m
	s.byKey[m.PublicKey] = m.Name
	s.hosts[m.Host()] = m.Name
}

func (s *state) del(name string) {
	m := s.byName[name]
	delete(s.byName, name)
	delete(s.byKey, m.PublicKey)
	s.hosts[m.Host()] = ""
}

// sortNames sets s.order to the sorted names of s's members.
func (s *state) sortNames() {
	order := make([]string, 0, len(s.byName))
	for name := range s.byName {
		order = append(order, name)
	}
	sort.Strings(order)
	s.order = order
}

// freeHost returns the lowest free member host number, or 0 if none.
func (s *state) freeHost() int {
	for n := FirstHost; n <= LastHost; n++ {
		if s.hosts[n] == "" {
			return n
		}
	}
	return 0
}

// moveTo returns a copy of s with every member moved to site, keeping host
// numbers.
func (s *state) moveTo(site Site) *state {
	c := s.clone()
	c.site = site
	for name, m := range c.byName {
		m.IPv4, m.IPv6 = site.Addrs(m.Host())
		c.byName[name] = m
	}
	return c
}
