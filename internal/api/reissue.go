package api

import (
	"context"
	"net/http"
	"net/url"
)

// OutdatedMember is a member whose configuration no longer matches the
// booture: it was issued for another endpoint or site (`status`).
type OutdatedMember struct {
	Name           string `json:"name"`
	IssuedEndpoint string `json:"issued_endpoint"`
	IssuedSite     string `json:"issued_site,omitempty"`
}

// MemberReissueRequest is the body of POST /v1/members/{name}/reissue.
type MemberReissueRequest struct {
	QR bool `json:"qr,omitempty"`
}

// ReissueBackend is implemented by a Backend that reissues members.
type ReissueBackend interface {
	// ReissueMember gives the member a new key pair (the old one stops
	// working at once) and returns its complete configuration.
	ReissueMember(ctx context.Context, name string, qr bool) (MemberAdded, error)
}

// ReissueMember asks the daemon for a member's new key pair and
// configuration.
func (c *Client) ReissueMember(ctx context.Context, name string, qr bool) (m MemberAdded, err error) {
	return m, c.do(ctx, "POST", "/v1/members/"+url.PathEscape(name)+"/reissue", MemberReissueRequest{QR: qr}, &m)
}

func handleReissue(b ReissueBackend) func(r *http.Request) (any, error) {
	return func(r *http.Request) (any, error) {
		var req MemberReissueRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return b.ReissueMember(r.Context(), r.PathValue("name"), req.QR)
	}
}
