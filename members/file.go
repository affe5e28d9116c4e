package members

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"time"

	"github.com/booture/booture/key"
)

// fileVersion is the version of the members file this package writes. It
// reads it and every older one (version 1 had no issued endpoint and site:
// they read as unknown); a newer file is refused rather than misread.
const fileVersion = 2

// file is the members file as stored on disk:
//
//	{
//	  "version": 2,
//	  "site": {"ipv4": "10.77.3.0/24", "ipv6": "fd12:3456:789a:3::/64"},
//	  "members": [
//	    {"name": "alice", "public_key": "base64", "ipv4": "10.77.3.2",
//	     "ipv6": "fd12:3456:789a:3::2", "full_tunnel": false,
//	     "disabled": false, "created": "2026-01-02T03:04:05Z",
//	     "issued_endpoint": "box.example.org:51820", "issued_site": "10.77.3.0/24"}
//	  ]
//	}
//
// Members are sorted by name so that the file diffs well.
type file struct {
	Version int          `json:"version"`
	Site    *fileSite    `json:"site"`
	Members []fileMember `json:"members"`
}

type fileSite struct {
	IPv4 string `json:"ipv4"`
	IPv6 string `json:"ipv6"`
}

type fileMember struct {
	Name       string    `json:"name"`
	PublicKey  string    `json:"public_key"`
	IPv4       string    `json:"ipv4"`
	IPv6       string    `json:"ipv6"`
	FullTunnel bool      `json:"full_tunnel"`
	Disabled   bool      `json:"disabled"`
	Created    time.Time `json:"created"`
	// IssuedEndpoint and IssuedSite: see Member.Issued (version 2).
	IssuedEndpoint string `json:"issued_endpoint,omitempty"`
	IssuedSite     string `json:"issued_site,omitempty"`
}

// encodeState returns the file content for s.
func encodeState(s *state) ([]byte, error) {
	f := file{
		Version: fileVersion,
		Site:    &fileSite{IPv4: s.site.IPv4.String(), IPv6: s.site.IPv6.String()},
		Members: make([]fileMember, 0, len(s.byName)),
	}
	for _, m := range s.byName {
		f.Members = append(f.Members, fileMember{
			Name:       m.Name,
			PublicKey:  m.PublicKey.String(),
			IPv4:       m.IPv4.String(),
			IPv6:       m.IPv6.String(),
			FullTunnel: m.FullTunnel,
			Disabled:   m.Disabled,
			Created:    m.Created,

			IssuedEndpoint: m.Issued.Endpoint,
			IssuedSite:     prefixString(m.Issued.Site),
		})
	}
	sort.Slice(f.Members, func(i, j int) bool { return f.Members[i].Name < f.Members[j].Name })
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding members: %w", err)
	}
	return append(data, '\n'), nil
}

// decodeState parses and validates the content of a members file. Any
// problem gives an error that says where (line and column for JSON errors,
// the member's name or index otherwise); it never returns a partial state.
func decodeState(data []byte) (*state, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("file is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f file
	if err := dec.Decode(&f); err != nil {
		return nil, jsonError(data, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s: unexpected data after the end of the members list", position(data, dec.InputOffset()))
	}
	if f.Version > fileVersion {
		return nil, fmt.Errorf("version %d was written by a newer booture (this one reads versions 1 to %d): upgrade booture", f.Version, fileVersion)
	}
	if f.Version < 1 {
		return nil, fmt.Errorf("unsupported version %d", f.Version)
	}
	if f.Site == nil {
		return nil, errors.New(`no "site"`)
	}
	site, err := ParseSite(f.Site.IPv4, f.Site.IPv6)
	if err != nil {
		return nil, fmt.Errorf("site: %w", err)
	}
	if f.Members == nil {
		return nil, errors.New(`no "members" list`)
	}
	if len(f.Members) > MaxMembers {
		return nil, fmt.Errorf("%d members, more than a site can hold (%d)", len(f.Members), MaxMembers)
	}
	s := newState(site)
	for i, fm := range f.Members {
		m, err := fm.member(site)
		if err != nil {
			if CheckName(fm.Name) == nil {
				return nil, fmt.Errorf("member %q: %w", fm.Name, err)
			}
			return nil, fmt.Errorf("member #%d: %w", i+1, err)
		}
		if _, dup := s.byName[m.Name]; dup {
			return nil, fmt.Errorf("member %q: listed twice", m.Name)
		}
		if other, dup := s.byKey[m.PublicKey]; dup {
			return nil, fmt.Errorf("member %q: public key %s already used by member %q", m.Name, m.PublicKey, other)
		}
		if other := s.hosts[m.Host()]; other != "" {
			return nil, fmt.Errorf("member %q: address %s already used by member %q", m.Name, m.IPv4, other)
		}
		s.put(m)
	}
	s.sortNames()
	return s, nil
}

func (fm fileMember) member(site Site) (Member, error) {
	if err := CheckName(fm.Name); err != nil {
		return Member{}, err
	}
	pub, err := key.ParsePublicKey(fm.PublicKey)
	if err != nil || pub.IsZero() || pub.String() != fm.PublicKey {
		return Member{}, fmt.Errorf("public key %.60q: %w", fm.PublicKey, ErrInvalidKey)
	}
	ip4, err := netip.ParseAddr(fm.IPv4)
	if err != nil {
		return Member{}, fmt.Errorf("ipv4: %w", err)
	}
	ip6, err := netip.ParseAddr(fm.IPv6)
	if err != nil {
		return Member{}, fmt.Errorf("ipv6: %w", err)
	}
	if _, err := site.hostOf(ip4, ip6); err != nil {
		return Member{}, err
	}
	if fm.Created.IsZero() {
		return Member{}, errors.New(`no "created" time`)
	}
	issued := Issue{Endpoint: fm.IssuedEndpoint}
	if fm.IssuedEndpoint != "" {
		if _, err := canonicalEndpoint(fm.IssuedEndpoint); err != nil {
			return Member{}, fmt.Errorf("issued_endpoint: %w", err)
		}
	}
	if fm.IssuedSite != "" {
		if issued.Site, err = netip.ParsePrefix(fm.IssuedSite); err != nil || !issued.Site.Addr().Is4() || issued.Site.Bits() != 24 {
			return Member{}, fmt.Errorf("issued_site %.40q: want an IPv4 /24", fm.IssuedSite)
		}
	}
	return Member{
		Issued:     issued,
		Name:       fm.Name,
		PublicKey:  pub,
		IPv4:       ip4,
		IPv6:       ip6,
		FullTunnel: fm.FullTunnel,
		Disabled:   fm.Disabled,
		Created:    fm.Created.UTC(),
	}, nil
}

// jsonError turns a decoding error into one line with a line:column
// position where the decoder gives an offset.
func jsonError(data []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		// Offset counts the bytes read, the offending one included.
		return fmt.Errorf("%s: %w", position(data, syn.Offset-1), err)
	case errors.As(err, &typ):
		return fmt.Errorf("%s: %w", position(data, typ.Offset-1), err)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return fmt.Errorf("file ends too early (truncated?): %w", err)
	}
	return err
}

// position returns "line L, column C" for a byte offset in data.
func position(data []byte, off int64) string {
	if off < 0 {
		off = 0
	}
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line := bytes.Count(before, []byte{'\n'}) + 1
	col := int(off) - bytes.LastIndexByte(before, '\n')
	return fmt.Sprintf("line %d, column %d", line, col)
}

func prefixString(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}
