// Package members keeps the list of a booture's VPN members: the people of
// the association who reach its services from their phones and laptops with
// the stock WireGuard apps.
//
// A Registry holds the members in one JSON file in the daemon's state
// directory. Each member has a name (a DNS label), a WireGuard public key, one
// IPv4 and one IPv6 address in the booture's site (host N of 10.77.S.0/24 and
// of the site's IPv6 /64, with the same N in 2..254; host 1 is the booture),
// a full-tunnel flag and an enabled/disabled state. Render turns a member
// into the configuration its WireGuard app imports, and QR draws that text as
// a QR code in a terminal.
//
// # Durability
//
// Every change (Add, Disable, Enable, Remove, SetSite) returns only after the
// new list is on disk: the file is replaced atomically (temporary file, fsync,
// rename, directory fsync), so a crash or a power cut leaves either the old or
// the new list, never a half-written one, and a member whose Add returned is
// never lost. When the write fails (disk full, read-only file system) the
// change returns an error wrapping ErrNotSaved and the registry is exactly as
// it was before. Concurrent changes are grouped into one write (group commit);
// each caller still waits for the write that contains its own change.
//
// A file that is damaged, has fields this version does not know, or
// contradicts itself (two members with one address or key) is refused with an
// error wrapping ErrCorrupt that says where: the registry never starts empty
// over a file it could not read. A lock file next to the members file keeps a
// second process (or a second Registry in the same process) from opening it.
//
// # Security
//
//   - Private keys are never stored. When Add generates a member's key pair,
//     the private key is returned to the caller once, to be put into the
//     member's configuration, and the registry keeps no copy of it, in memory
//     or on disk. A member who gives its own public key keeps its private key
//     to itself: the booture never sees it.
//   - The members file and its lock file are created with mode 0600 (a more
//     open mode found at Open is tightened): the file holds no secret, but
//     names, keys and addresses of people are nobody else's business.
//   - Every name, key and address read from the file or from a caller is
//     validated; names are DNS labels, so they can appear in a configuration
//     comment, a log line or a DNS name without escaping.
//
// The package logs nothing unless a *slog.Logger is given with WithLogger,
// and then only what the caller cannot see otherwise (members moved to a new
// site at Open, leftovers of an interrupted write removed).
package members
