package host

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
)

// DefaultUsers are tried in order when no plugin user is configured: a
// system user made for plugins by the package, else nobody.
var DefaultUsers = []string{"booture-plugin", "nobody"}

// User is an unprivileged account plugins run as, so that a bug in a
// plugin (or a plugin that is not what it claims) is not root.
type User struct {
	Name   string
	UID    uint32
	GID    uint32   // primary group
	Groups []uint32 // supplementary groups (e.g. one that may read a site's files)
}

// LookupUser resolves the configured plugin user: a name or a numeric uid;
// "" means the first of DefaultUsers that exists. It returns nil for root
// (plugins then run as the daemon's user, as they did before there was a
// plugin user).
func LookupUser(name string) (*User, error) {
	if name == "" {
		for _, n := range DefaultUsers {
			if u, err := LookupUser(n); err == nil {
				return u, nil
			}
		}
		return nil, fmt.Errorf("no plugin user: neither %s exists; create one or set plugin_user", strings.Join(DefaultUsers, " nor "))
	}
	u, err := user.Lookup(name)
	if err != nil {
		if _, nerr := strconv.ParseUint(name, 10, 32); nerr != nil {
			return nil, fmt.Errorf("plugin user %q: %w", name, err)
		}
		if u, err = user.LookupId(name); err != nil {
			return nil, fmt.Errorf("plugin user %q: %w", name, err)
		}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("plugin user %q: uid %q or gid %q is not a number", name, u.Uid, u.Gid)
	}
	if uid == 0 {
		return nil, nil
	}
	out := &User{Name: u.Username, UID: uint32(uid), GID: uint32(gid), Groups: []uint32{}}
	gids, _ := u.GroupIds() // none when unknown: only the primary group
	for _, g := range gids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil && uint32(n) != out.GID {
			out.Groups = append(out.Groups, uint32(n))
		}
	}
	return out, nil
}

// switches reports whether plugins must be started as u: only a root
// daemon can, and only another user needs it.
func (u *User) switches() bool {
	return u != nil && os.Geteuid() == 0 && int(u.UID) != os.Geteuid()
}
