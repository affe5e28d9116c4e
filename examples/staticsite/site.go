package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/booture/booture/plugins/sdk"
)

// Site is the plugin: one loopback HTTP server per configured service.
type Site struct {
	log     *slog.Logger
	version string

	mu      sync.Mutex
	servers map[string]*server // by service name
}

var _ sdk.Plugin = (*Site)(nil)

// New returns the plugin, logging to log.
func New(log *slog.Logger, version string) *Site {
	return &Site{log: log, version: version, servers: map[string]*server{}}
}

type server struct {
	root    string
	listen  string // as configured ("" = any loopback port)
	listing bool
	addr    string // actual address
	dir     *os.Root
	srv     *http.Server
}

// Describe implements sdk.Plugin.
func (s *Site) Describe(context.Context) (sdk.Info, error) {
	return sdk.Info{
		Name:    "staticsite",
		Version: s.version,
		Services: []sdk.ServiceInfo{{
			Name:        "site",
			Description: "a folder served as a static web site",
		}},
	}, nil
}

// Configure implements sdk.Plugin. Settings: root (the folder, required),
// listen (loopback address, default: a port picked by the system) and
// listing ("true" lists folders without index.html; default "false").
// Servers whose settings did not change keep running, on the same port.
func (s *Site) Configure(ctx context.Context, req sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var resp sdk.ConfigureResponse
	keep := map[string]bool{}
	for _, spec := range req.Services {
		root, listen := spec.Settings["root"], spec.Settings["listen"]
		if root == "" {
			return sdk.ConfigureResponse{}, fmt.Errorf("service %s: setting root (the folder to serve) is missing", spec.Name)
		}
		if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
			return sdk.ConfigureResponse{}, fmt.Errorf("service %s: root %s is not a folder", spec.Name, root)
		}
		if err := checkLoopback(listen); err != nil {
			return sdk.ConfigureResponse{}, fmt.Errorf("service %s: %w", spec.Name, err)
		}
		var listing bool
		switch v := spec.Settings["listing"]; v {
		case "", "false":
		case "true":
			listing = true
		default:
			return sdk.ConfigureResponse{}, fmt.Errorf("service %s: listing %q: want true or false", spec.Name, v)
		}
		cur := s.servers[spec.Name]
		if cur == nil || cur.root != root || cur.listen != listen || cur.listing != listing {
			if cur != nil {
				cur.shutdown(ctx)
			}
			var err error
			if cur, err = s.start(root, listen, listing); err != nil {
				return sdk.ConfigureResponse{}, fmt.Errorf("service %s: %w", spec.Name, err)
			}
			s.servers[spec.Name] = cur
			s.log.Info("serving folder", "service", spec.Name, "root", root, "addr", cur.addr)
		}
		keep[spec.Name] = true
		resp.Routes = append(resp.Routes, sdk.Route{
			Service:    spec.Name,
			Host:       spec.Host,
			PathPrefix: "/",
			Upstream:   "http://" + cur.addr,
		})
	}
	for name, srv := range s.servers {
		if !keep[name] {
			srv.shutdown(ctx)
			delete(s.servers, name)
		}
	}
	return resp, nil
}

func checkLoopback(listen string) error {
	if listen == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("listen %q: %w", listen, err)
	}
	if a, err := netip.ParseAddr(host); err != nil || !a.IsLoopback() {
		return fmt.Errorf("listen %q: must be a loopback address, e.g. 127.0.0.1:8081", listen)
	}
	return nil
}

func (s *Site) start(root, listen string, listing bool) (*server, error) {
	addr := listen
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	dir, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("opening root: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		dir.Close()
		return nil, fmt.Errorf("listening: %w", err)
	}
	srv := &http.Server{
		Handler:           &files{root: dir, listing: listing},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serving", "root", root, "error", err)
		}
	}()
	return &server{root: root, listen: listen, listing: listing, addr: ln.Addr().String(), dir: dir, srv: srv}, nil
}

// shutdown lets requests in flight finish (bounded by ctx and 5 s).
func (v *server) shutdown(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := v.srv.Shutdown(ctx); err != nil {
		v.srv.Close()
	}
	v.dir.Close()
}

// Health implements sdk.Plugin: the folder is there and the server
// answers.
func (s *Site) Health(ctx context.Context) (sdk.Health, error) {
	s.mu.Lock()
	var checks []sdk.Checker
	for name, v := range s.servers {
		checks = append(checks, sdk.CheckFunc(func(context.Context) sdk.Check {
			if fi, err := os.Stat(v.root); err != nil || !fi.IsDir() {
				return sdk.Check{Service: name, Name: "root", State: sdk.StateUnhealthy, Message: v.root + " is gone"}
			}
			return sdk.Check{Service: name, Name: "root", State: sdk.StateHealthy}
		}), sdk.HTTPProbe{
			Service: name, Name: "http", URL: "http://" + v.addr + "/", Timeout: 2 * time.Second,
			Status: []int{http.StatusOK, http.StatusNotFound, http.StatusForbidden},
		})
	}
	s.mu.Unlock()
	if len(checks) == 0 {
		return sdk.Health{State: sdk.StateUnknown, Message: "not configured"}, nil
	}
	return sdk.RunChecks(ctx, checks...), nil
}

// Stop implements sdk.Plugin.
func (s *Site) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, v := range s.servers {
		v.shutdown(ctx)
		delete(s.servers, name)
	}
	return nil
}
