package members

import (
	"errors"

	"github.com/booture/booture/internal/names"
)

// Sentinel errors, to be checked with errors.Is. The errors returned by this
// package wrap them in a one-line message that says which member, key or file
// is concerned.
var (
	// ErrInvalidName: the name is not a DNS label (a-z, 0-9, '-', 1 to 63
	// characters, no '-' at either end). It is the same value as the one
	// package internal/names wraps.
	ErrInvalidName = names.ErrInvalid
	// ErrExists: a member with that name already exists.
	ErrExists = errors.New("a member with this name already exists")
	// ErrNotFound: no member has that name.
	ErrNotFound = errors.New("no such member")
	// ErrInvalidKey: the text is not a base64 WireGuard public key.
	ErrInvalidKey = errors.New("not a base64 WireGuard public key")
	// ErrKeyInUse: the public key is already used by another member or by a
	// booture of the mesh.
	ErrKeyInUse = errors.New("public key already in use")
	// ErrSiteFull: every address of the site (hosts 2 to 254) is taken.
	ErrSiteFull = errors.New("site is full")
	// ErrInvalidSite: a site prefix is not an IPv4 /24 or an IPv6 /64.
	ErrInvalidSite = errors.New("invalid site")
	// ErrNotSaved: the change could not be written to disk; nothing changed,
	// in memory or on disk.
	ErrNotSaved = errors.New("not saved, nothing changed")
	// ErrCorrupt: the members file exists but cannot be trusted (damaged,
	// unknown fields, contradictory content).
	ErrCorrupt = errors.New("members file is damaged")
	// ErrLocked: another process (or another Registry) has the members file
	// open.
	ErrLocked = errors.New("members file is in use")
	// ErrClosed: the Registry was closed.
	ErrClosed = errors.New("members registry is closed")
	// ErrInvalidConfig: a ClientConfig cannot be rendered.
	ErrInvalidConfig = errors.New("invalid client configuration")
)
