package wire

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/booture/booture/catalog"
	"github.com/booture/booture/internal/names"
	pb "github.com/booture/booture/plugins/proto"
)

// MaxRoutesPerService bounds what one service may ask of the proxy.
const MaxRoutesPerService = 64

// maxTimeout bounds route timeouts: anything longer is a mistake.
const maxTimeout = 24 * time.Hour

// CheckDescription reports what is wrong with a plugin's Describe answer.
// When wantName is not empty the plugin must be called so (its binary is
// booture-plugin-WANTNAME).
func CheckDescription(d Description, wantName string) error {
	if err := names.Check(d.Name); err != nil {
		return fmt.Errorf("plugin name: %w", err)
	}
	if wantName != "" && d.Name != wantName {
		return fmt.Errorf("binary booture-plugin-%s describes itself as %q", wantName, d.Name)
	}
	if strings.TrimSpace(d.Version) == "" {
		return errors.New("plugin version is empty")
	}
	if d.ProtocolVersion != pb.ProtocolVersion {
		return fmt.Errorf("plugin speaks protocol version %d, want %d", d.ProtocolVersion, pb.ProtocolVersion)
	}
	if len(d.Services) == 0 {
		return errors.New("plugin offers no service")
	}
	for _, s := range d.Services {
		if err := names.Check(s.Name); err != nil {
			return fmt.Errorf("service name: %w", err)
		}
	}
	return nil
}

// CheckedRoutes is the outcome of CheckRoutes.
type CheckedRoutes struct {
	// Routes are the valid routes by service, Access set from the spec,
	// sorted by path prefix.
	Routes map[string][]catalog.Route
	// Errors say, by service, why its routes were all refused.
	Errors map[string]error
	// Stray are errors about routes naming no configured service.
	Stray []error
}

// CheckRoutes validates the routes a plugin returned for specs, service by
// service: one bad route refuses all of its service's routes (a half-routed
// service is worse than a clearly broken one) and no other service's.
func CheckRoutes(mesh Mesh, specs []Spec, routes []catalog.Route) CheckedRoutes {
	out := CheckedRoutes{Routes: map[string][]catalog.Route{}, Errors: map[string]error{}}
	bySvc := map[string]Spec{}
	for _, s := range specs {
		bySvc[s.Name] = s
	}
	seen := map[string]map[string]bool{} // service -> host+prefix
	for i, r := range routes {
		spec, ok := bySvc[r.Service]
		if !ok {
			out.Stray = append(out.Stray, fmt.Errorf("route %d (%s%s) is for unknown service %q", i, r.Host, r.PathPrefix, r.Service))
			continue
		}
		if out.Errors[r.Service] != nil {
			continue
		}
		if err := checkRoute(mesh, spec, r); err != nil {
			out.Errors[r.Service] = fmt.Errorf("route %s%s: %w", r.Host, r.PathPrefix, err)
			continue
		}
		key := r.Host + r.PathPrefix
		if seen[r.Service] == nil {
			seen[r.Service] = map[string]bool{}
		}
		if seen[r.Service][key] {
			out.Errors[r.Service] = fmt.Errorf("duplicate route for %s", key)
			continue
		}
		seen[r.Service][key] = true
		if len(seen[r.Service]) > MaxRoutesPerService {
			out.Errors[r.Service] = fmt.Errorf("more than %d routes", MaxRoutesPerService)
			continue
		}
		r.Access = spec.Access
		if r.Redirect != "" && r.RedirectCode == 0 {
			r.RedirectCode = 301
		}
		out.Routes[r.Service] = append(out.Routes[r.Service], r)
	}
	for _, s := range specs {
		if out.Errors[s.Name] != nil {
			delete(out.Routes, s.Name)
			continue
		}
		if len(out.Routes[s.Name]) == 0 {
			out.Errors[s.Name] = errors.New("plugin returned no route")
			continue
		}
		rs := out.Routes[s.Name]
		sort.Slice(rs, func(i, j int) bool { return rs[i].PathPrefix < rs[j].PathPrefix })
	}
	return out
}

func checkRoute(mesh Mesh, spec Spec, r catalog.Route) error {
	suffix := "." + mesh.Booture + "." + mesh.Domain
	switch {
	case r.Host == spec.Host:
	case !strings.HasSuffix(r.Host, suffix):
		return fmt.Errorf("host %q is outside this booture's names (*%s)", r.Host, suffix)
	default:
		return fmt.Errorf("host %q is not the service's; service %s may only use %s", r.Host, spec.Name, spec.Host)
	}
	if err := checkPathPrefix(r.PathPrefix); err != nil {
		return err
	}
	switch {
	case r.Upstream != "" && r.Redirect != "":
		return errors.New("both upstream and redirect are set")
	case r.Upstream == "" && r.Redirect == "":
		return errors.New("neither upstream nor redirect is set")
	case r.Upstream != "":
		if err := CheckUpstream(r.Upstream); err != nil {
			return err
		}
	default:
		if err := checkRedirect(r.Redirect, r.RedirectCode); err != nil {
			return err
		}
	}
	if r.DialTimeout < 0 || r.DialTimeout > maxTimeout {
		return fmt.Errorf("dial timeout %s out of range [0, %s]", r.DialTimeout, maxTimeout)
	}
	if r.ResponseTimeout < 0 || r.ResponseTimeout > maxTimeout {
		return fmt.Errorf("response timeout %s out of range [0, %s]", r.ResponseTimeout, maxTimeout)
	}
	return nil
}

func checkPathPrefix(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("path prefix %q does not start with '/'", p)
	}
	for _, c := range p {
		if c <= ' ' || c == 0x7f || c == '?' || c == '#' || c == '\\' {
			return fmt.Errorf("path prefix %q holds a forbidden character %q", p, c)
		}
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." || seg == "." {
			return fmt.Errorf("path prefix %q holds a dot segment", p)
		}
	}
	return nil
}

// CheckUpstream reports what is wrong with an upstream base URL: it must
// be an absolute http(s) URL with a host, and nothing but a path.
func CheckUpstream(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("upstream %q: %w", s, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("upstream %q: scheme must be http or https", s)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("upstream %q: no host", s)
	case u.User != nil:
		return fmt.Errorf("upstream %q: credentials in URL", s)
	case u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return fmt.Errorf("upstream %q: only scheme, host, port and path are allowed", s)
	}
	return nil
}

func checkRedirect(loc string, code int) error {
	switch code {
	case 0, 301, 302, 303, 307, 308:
	default:
		return fmt.Errorf("redirect code %d: want 301, 302, 303, 307 or 308", code)
	}
	if strings.ContainsAny(loc, "\r\n") {
		return fmt.Errorf("redirect %q holds a line break", loc)
	}
	if strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, "//") {
		return nil
	}
	u, err := url.Parse(loc)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("redirect %q: want a path or an absolute http(s) URL", loc)
	}
	return nil
}

// ServiceHealth is the health of one service in a report: the worst state
// of the checks about it (or about every service), else the overall state.
func ServiceHealth(r Report, service string) (catalog.Health, string) {
	state, msg, found := catalog.HealthHealthy, "", false
	for _, c := range r.Checks {
		if c.Service != "" && c.Service != service {
			continue
		}
		found = true
		if c.State.Rank() > state.Rank() {
			state, msg = c.State, c.Name+": "+c.Message
		}
	}
	if !found {
		return r.State, r.Message
	}
	return state, msg
}
