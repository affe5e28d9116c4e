package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"time"
)

// Client talks to the daemon's admin socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	// Joins and expulsions wait for other bootures: allow them time.
	return &Client{socket: path, http: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

// CloseIdle closes idle connections to the daemon.
func (c *Client) CloseIdle() { c.http.CloseIdleConnections() }

// do sends a request and decodes the answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body bytes.Buffer
	if in != nil {
		if err := json.NewEncoder(&body).Encode(in); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://bootured"+path, &body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return c.dialError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e Error
		if json.NewDecoder(resp.Body).Decode(&e) != nil || e.Message == "" {
			e.Message = resp.Status
		}
		e.Status = resp.StatusCode
		return &e
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding the daemon's answer: %w", err)
	}
	return nil
}

// dialError explains the usual reasons the daemon cannot be reached.
func (c *Client) dialError(err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("bootured is not running (no daemon on %s)", c.socket)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("permission denied on %s: run as root or as a member of the socket's group", c.socket)
	}
	return fmt.Errorf("talking to bootured on %s: %w", c.socket, err)
}

func (c *Client) Status(ctx context.Context) (s Status, err error) {
	return s, c.do(ctx, "GET", "/v1/status", nil, &s)
}

func (c *Client) Peers(ctx context.Context) (p []Peer, err error) {
	return p, c.do(ctx, "GET", "/v1/peers", nil, &p)
}

func (c *Client) Invite(ctx context.Context, expires string) (i Invitation, err error) {
	return i, c.do(ctx, "POST", "/v1/invite", InviteRequest{Expires: expires}, &i)
}

func (c *Client) Invitations(ctx context.Context) (l []PendingInvitation, err error) {
	return l, c.do(ctx, "GET", "/v1/invitations", nil, &l)
}

func (c *Client) RevokeInvitation(ctx context.Context, tokenOrID string) (i PendingInvitation, err error) {
	return i, c.do(ctx, "POST", "/v1/invitations/revoke", RevokeRequest{Invitation: tokenOrID}, &i)
}

func (c *Client) Join(ctx context.Context, token string) (r JoinResult, err error) {
	return r, c.do(ctx, "POST", "/v1/join", JoinRequest{Token: token}, &r)
}

func (c *Client) Expel(ctx context.Context, name string) (r ExpelResult, err error) {
	return r, c.do(ctx, "POST", "/v1/expel", NameRequest{Name: name}, &r)
}

func (c *Client) Leave(ctx context.Context) error {
	return c.do(ctx, "POST", "/v1/leave", nil, nil)
}

func (c *Client) AddMember(ctx context.Context, req MemberAddRequest) (m MemberAdded, err error) {
	return m, c.do(ctx, "POST", "/v1/members", req, &m)
}

func (c *Client) Members(ctx context.Context) (m []Member, err error) {
	return m, c.do(ctx, "GET", "/v1/members", nil, &m)
}

func (c *Client) Member(ctx context.Context, name string) (m Member, err error) {
	return m, c.do(ctx, "GET", "/v1/members/"+url.PathEscape(name), nil, &m)
}

func (c *Client) MemberConfig(ctx context.Context, name string, qr bool) (m MemberConfig, err error) {
	q := ""
	if qr {
		q = "?qr=1"
	}
	return m, c.do(ctx, "GET", "/v1/members/"+url.PathEscape(name)+"/config"+q, nil, &m)
}

func (c *Client) SetMemberEnabled(ctx context.Context, name string, enabled bool) (m Member, err error) {
	verb := "disable"
	if enabled {
		verb = "enable"
	}
	return m, c.do(ctx, "POST", "/v1/members/"+url.PathEscape(name)+"/"+verb, nil, &m)
}

func (c *Client) RemoveMember(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/v1/members/"+url.PathEscape(name), nil, nil)
}

func (c *Client) Services(ctx context.Context) (s []Service, err error) {
	return s, c.do(ctx, "GET", "/v1/services", nil, &s)
}

func (c *Client) Plugins(ctx context.Context) (p []Plugin, err error) {
	return p, c.do(ctx, "GET", "/v1/plugins", nil, &p)
}

func (c *Client) InstallPlugin(ctx context.Context, path string) (p Plugin, err error) {
	return p, c.do(ctx, "POST", "/v1/plugins/install", PluginInstallRequest{Path: path}, &p)
}

func (c *Client) ReloadPlugin(ctx context.Context, name string) (p Plugin, err error) {
	return p, c.do(ctx, "POST", "/v1/plugins/"+url.PathEscape(name)+"/reload", nil, &p)
}
