// Command testplugin is the host tests' plugin. It is built once and copied
// under several names; the name picks its behaviour:
//
//	booture-plugin-garbage*  prints to stdout before the handshake
//	booture-plugin-silent*   never completes the handshake
//	booture-plugin-crasher*  exits at once
//	booture-plugin-liar*     describes itself under another name
//	anything else            a well-behaved plugin
//
// Settings of a well-behaved plugin's services: mode (bad-upstream,
// foreign-host, other-service-host, duplicate: return invalid routes),
// serve=true (serve HTTP itself, answering "pid N", and route to that),
// control=DIR (a file DIR/hang makes the next Health hang; it is consumed;
// each Health call appends a line to DIR/polls),
// callback=true (ask the host for the bootures and report them in a note).
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/booture/booture/plugins/sdk"
)

func main() {
	base := filepath.Base(os.Args[0])
	name := base
	if i := strings.Index(base, "booture-plugin-"); i >= 0 {
		name = base[i+len("booture-plugin-"):]
	}
	switch {
	case strings.HasPrefix(name, "garbage"):
		fmt.Println("hello from a careless plugin")
	case strings.HasPrefix(name, "silent"):
		time.Sleep(time.Hour)
		return
	case strings.HasPrefix(name, "crasher"):
		fmt.Fprintln(os.Stderr, "crasher: giving up")
		os.Exit(3)
	case strings.HasPrefix(name, "liar"):
		name = "someone-else"
	}
	log := sdk.NewLogger()
	sdk.Serve(&testPlugin{name: name, log: log})
}

type testPlugin struct {
	name string
	log  interface {
		Info(string, ...any)
	}

	mu      sync.Mutex
	control []string
	servers []*http.Server
}

func (p *testPlugin) Describe(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: p.name, Version: "1.0.0", Services: []sdk.ServiceInfo{{Name: p.name}}}, nil
}

func (p *testPlugin) Configure(ctx context.Context, req sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var resp sdk.ConfigureResponse
	for _, s := range req.Services {
		up := s.Upstream
		if s.Settings["serve"] == "true" {
			addr, err := p.serve()
			if err != nil {
				return resp, err
			}
			up = "http://" + addr
		}
		if d := s.Settings["control"]; d != "" {
			p.control = append(p.control, d)
		}
		r := sdk.Route{Service: s.Name, Host: s.Host, PathPrefix: "/", Upstream: up}
		switch s.Settings["mode"] {
		case "bad-upstream":
			r.Upstream = "ftp://127.0.0.1/"
		case "foreign-host":
			r.Host = "evil.example.com"
		case "other-service-host":
			r.Host = "victim." + req.Mesh.Booture + "." + req.Mesh.Domain
		case "duplicate":
			resp.Routes = append(resp.Routes, r)
		}
		resp.Routes = append(resp.Routes, r)
		if s.Settings["callback"] == "true" {
			bs, err := req.Host.Bootures(ctx)
			if err != nil {
				return resp, fmt.Errorf("asking the host: %w", err)
			}
			var names []string
			for _, b := range bs {
				names = append(names, b.Name+"="+b.IPv4.String())
			}
			resp.Notes = append(resp.Notes, sdk.Note{Service: s.Name, Text: "bootures: " + strings.Join(names, ",")})
		}
	}
	p.log.Info("configured", "services", len(req.Services), "pid", os.Getpid())
	return resp, nil
}

// serve starts an HTTP server on loopback answering "pid N".
func (p *testPlugin) serve() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	body := fmt.Sprintf("pid %d\n", os.Getpid())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(body))
	})}
	p.servers = append(p.servers, srv)
	go srv.Serve(ln)
	return ln.Addr().String(), nil
}

func (p *testPlugin) Health(context.Context) (sdk.Health, error) {
	p.mu.Lock()
	control := append([]string(nil), p.control...)
	p.mu.Unlock()
	for _, d := range control {
		if f, err := os.OpenFile(filepath.Join(d, "polls"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			f.WriteString("health\n")
			f.Close()
		}
		if os.Remove(filepath.Join(d, "hang")) == nil {
			time.Sleep(time.Hour) // hung: the host must kill us
		}
	}
	return sdk.Health{State: sdk.StateHealthy, Checks: []sdk.Check{{Name: "alive", State: sdk.StateHealthy}}}, nil
}

func (p *testPlugin) Stop(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.servers {
		s.Shutdown(ctx)
	}
	return nil
}
