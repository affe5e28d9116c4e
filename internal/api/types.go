// Package api is the admin API between the booture CLI and the daemon: JSON
// over HTTP on a unix socket. It holds the wire types (their JSON names are
// part of the product contract: scripts read `booture status --json`), the
// server side that maps requests to a Backend, and the client the CLI uses.
// It imports nothing of the network stack, so the CLI stays small.
package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/booture/booture/catalog"
)

// Status is `booture status --json`.
type Status struct {
	Name      string    `json:"name"`
	Version   string    `json:"version"`
	PublicKey string    `json:"public_key"`
	MeshID    string    `json:"mesh_id"`
	MeshIPv4  string    `json:"mesh_ipv4"`
	MeshIPv6  string    `json:"mesh_ipv6"`
	Site      int       `json:"site"`
	SiteIPv4  string    `json:"site_ipv4"`
	SiteIPv6  string    `json:"site_ipv6"`
	MeshPool4 string    `json:"mesh_pool_ipv4"`
	MeshPool6 string    `json:"mesh_pool_ipv6"`
	Endpoint  string    `json:"endpoint"`
	Gossip    string    `json:"gossip"`
	Epoch     uint64    `json:"key_epoch"`
	WireGuard WireGuard `json:"wireguard"`
	Peers     []Peer    `json:"peers"`
	// Conflicts lists site conflicts found when parts of the mesh met.
	Conflicts []Conflict `json:"conflicts"`
	// Expelled is true when the other bootures expelled this one.
	Expelled bool `json:"expelled"`
	Members  int  `json:"members"`
	// MemberEndpoint is the Endpoint written in members' configurations
	// (a DNS name when --advertise is one).
	MemberEndpoint string `json:"member_endpoint"`
	// MembersOutdated lists the members whose configuration names another
	// endpoint or site than the booture's current ones.
	MembersOutdated []OutdatedMember `json:"members_outdated"`
	Reconcile       Reconcile        `json:"reconcile"`
	GossipTraffic   Traffic          `json:"gossip_traffic"`
}

// WireGuard describes the data plane.
type WireGuard struct {
	Interface  string `json:"interface"`
	Mode       string `json:"mode"` // kernel or userspace
	ListenPort int    `json:"listen_port"`
	MTU        int    `json:"mtu"`
}

// Peer is another booture as `status` and `peers` show it.
type Peer struct {
	Name          string     `json:"name"`
	PublicKey     string     `json:"public_key"`
	MeshIPv4      string     `json:"mesh_ipv4"`
	MeshIPv6      string     `json:"mesh_ipv6"`
	Site          int        `json:"site"`
	SiteIPv4      string     `json:"site_ipv4"`
	State         string     `json:"state"` // alive, suspect, dead, left
	Endpoint      string     `json:"endpoint"`
	LastHandshake *time.Time `json:"last_handshake"`
	RxBytes       int64      `json:"rx_bytes"`
	TxBytes       int64      `json:"tx_bytes"`
	Version       string     `json:"version,omitempty"`
	// SiteConflict is set when this peer holds a site another booture won;
	// it is not routed until it moves.
	SiteConflict bool `json:"site_conflict,omitempty"`
}

// Conflict is a site conflict and how it was settled.
type Conflict struct {
	Site    int       `json:"site"`
	Winner  string    `json:"winner,omitempty"`
	Loser   string    `json:"loser"`
	NewSite int       `json:"new_site,omitempty"`
	At      time.Time `json:"at"`
}

// Reconcile reports the network reconciler.
type Reconcile struct {
	Runs      uint64     `json:"runs"`
	Errors    uint64     `json:"errors"`
	LastRun   *time.Time `json:"last_run"`
	LastError string     `json:"last_error,omitempty"`
}

// Traffic counts bytes.
type Traffic struct {
	In  uint64 `json:"in_bytes"`
	Out uint64 `json:"out_bytes"`
}

// InviteRequest is the body of POST /v1/invite.
type InviteRequest struct {
	Expires string `json:"expires,omitempty"` // Go duration; empty = 24h
}

// Invitation is the answer to an invite.
type Invitation struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
	// ID names the invitation in invite list and invite --revoke.
	ID string `json:"id"`
}

// PendingInvitation is an invitation not yet used, revoked or expired:
// GET /v1/invitations lists them. It never carries the token.
type PendingInvitation struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

// RevokeRequest is the body of POST /v1/invitations/revoke: a token or an
// invitation id (or a unique prefix of one of at least 8 characters).
type RevokeRequest struct {
	Invitation string `json:"invitation"`
}

// JoinRequest is the body of POST /v1/join.
type JoinRequest struct {
	Token string `json:"token"`
}

// JoinResult is the answer to a join.
type JoinResult struct {
	MeshID  string `json:"mesh_id"`
	Site    int    `json:"site"`
	Inviter string `json:"inviter"`
	Merged  bool   `json:"merged"`
}

// NameRequest names a booture or a member.
type NameRequest struct {
	Name string `json:"name"`
}

// ExpelResult is the answer to an expel.
type ExpelResult struct {
	Name      string   `json:"name"`
	Notified  []string `json:"notified"`
	Unreached []string `json:"unreached"`
}

// MemberAddRequest is the body of POST /v1/members.
type MemberAddRequest struct {
	Name       string `json:"name"`
	PublicKey  string `json:"public_key,omitempty"`
	FullTunnel bool   `json:"full_tunnel,omitempty"`
	// QR asks for the configuration rendered as a terminal QR code too.
	QR bool `json:"qr,omitempty"`
}

// Member is a VPN member as `member list/show --json` show it.
type Member struct {
	Name          string     `json:"name"`
	PublicKey     string     `json:"public_key"`
	IPv4          string     `json:"ipv4"`
	IPv6          string     `json:"ipv6"`
	State         string     `json:"state"` // enabled or disabled
	FullTunnel    bool       `json:"full_tunnel"`
	Created       time.Time  `json:"created"`
	Endpoint      string     `json:"endpoint,omitempty"`
	LastHandshake *time.Time `json:"last_handshake"`
	RxBytes       int64      `json:"rx_bytes"`
	TxBytes       int64      `json:"tx_bytes"`
}

// MemberAdded is the answer to a member add: the member and the client
// configuration to hand over (it holds the private key when the booture
// generated it: shown once, never stored).
type MemberAdded struct {
	Member Member `json:"member"`
	Config string `json:"config"`
	QR     string `json:"qr,omitempty"`
}

// MemberConfig is a member's configuration as `member show --config`
// prints it: without the private key, which the booture never kept.
type MemberConfig struct {
	Config string `json:"config"`
	QR     string `json:"qr,omitempty"`
}

// Plugin is a plugin as `plugin list --json` shows it.
type Plugin struct {
	Name      string    `json:"name"`
	Version   string    `json:"version"`
	Path      string    `json:"path"`
	SHA256    string    `json:"sha256"`
	State     string    `json:"state"`
	Restarts  int       `json:"restarts"`
	LastError string    `json:"last_error,omitempty"`
	Services  []string  `json:"services"`
	Since     time.Time `json:"since,omitempty"`
}

// PluginInstallRequest is the body of POST /v1/plugins/install.
type PluginInstallRequest struct {
	Path string `json:"path"`
}

// Service is a catalog entry (`booture services --json`).
type Service = catalog.Service

// Error is an API error: an HTTP status and a one-line message for the
// user.
type Error struct {
	Status  int    `json:"-"`
	Message string `json:"error"`
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with status code.
func Errorf(status int, format string, args ...any) error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...)}
}

// BadRequest wraps err as a 400 error (the user's input is wrong).
func BadRequest(err error) error { return &Error{Status: http.StatusBadRequest, Message: err.Error()} }

// NotFound wraps err as a 404 error.
func NotFound(err error) error { return &Error{Status: http.StatusNotFound, Message: err.Error()} }

// Conflict wraps err as a 409 error (it clashes with existing state).
func ConflictErr(err error) error { return &Error{Status: http.StatusConflict, Message: err.Error()} }

// statusOf returns the HTTP status of err.
func statusOf(err error) int {
	var e *Error
	if errors.As(err, &e) && e.Status != 0 {
		return e.Status
	}
	return http.StatusInternalServerError
}
