package hygiene

import (
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

type pkg struct {
	ImportPath string
	Dir        string
	Doc        string
	Name       string
	GoFiles    []string
	Deps       []string
}

// goList runs `go list -json` on patterns.
func goList(t *testing.T, args ...string) []pkg {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not on PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"list", "-json"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for _, p := range goList(t, "github.com/booture/booture/...") {
		if len(p.GoFiles) == 0 {
			continue // test-only packages
		}
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no doc comment (// Package %s ... or // Command ...)", p.ImportPath, p.Name)
		}
	}
}

// The CLI talks to the daemon over its socket and never touches the network
// stack: it must not even link the libraries that do.
func TestCLIDoesNotImportTheNetworkStack(t *testing.T) {
	forbidden := []string{
		"github.com/vishvananda/netlink",
		"golang.zx2c4.com/wireguard/wgctrl",
		"golang.zx2c4.com/wireguard/device",
		"github.com/hashicorp/memberlist",
		"github.com/google/nftables",
		"github.com/booture/booture/netcfg",
		"github.com/booture/booture/mesh",
	}
	deps := func(path string) map[string]bool {
		ps := goList(t, path)
		if len(ps) != 1 || len(ps[0].Deps) == 0 {
			t.Fatalf("go list %s: no dependencies listed", path)
		}
		out := map[string]bool{}
		for _, d := range ps[0].Deps {
			out[d] = true
		}
		return out
	}
	// The check must be able to see a dependency: the daemon has them.
	if !deps("github.com/booture/booture/cmd/bootured")["github.com/vishvananda/netlink"] {
		t.Fatal("go list does not show the daemon's dependency on netlink: the check below would be blind")
	}
	for d := range deps("github.com/booture/booture/cmd/booture") {
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, f+"/") {
				t.Errorf("the CLI depends on %s", d)
			}
		}
	}
}

// Plugin authors import only the SDK: the SDK must not pull the daemon in.
func TestSDKStaysSmall(t *testing.T) {
	for _, p := range goList(t, "github.com/booture/booture/plugins/sdk") {
		for _, d := range p.Deps {
			if strings.HasPrefix(d, "github.com/booture/booture/") &&
				!strings.HasPrefix(d, "github.com/booture/booture/plugins/") &&
				d != "github.com/booture/booture/catalog" && !strings.HasPrefix(d, "github.com/booture/booture/internal/names") {
				t.Errorf("the plugin SDK depends on %s", d)
			}
		}
	}
}

// netcfg is the OS seam: it imports nothing else of booture's but the key
// types, and those import nothing of booture's at all.
func TestNetcfgImportsNothingOfOurs(t *testing.T) {
	allowed := map[string][]string{
		"github.com/booture/booture/netcfg": {"github.com/booture/booture/key"},
		"github.com/booture/booture/key":    nil,
	}
	for _, p := range goList(t, "github.com/booture/booture/netcfg", "github.com/booture/booture/key") {
		for _, d := range p.Deps {
			if strings.HasPrefix(d, "github.com/booture/booture/") && !slices.Contains(allowed[p.ImportPath], d) {
				t.Errorf("%s depends on %s", p.ImportPath, d)
			}
		}
	}
}

// The mesh, the network model, the key types and the member registry are
// pure: only netcfg/linuxnet (linked by the daemon) talks to the kernel. A
// test that plans a mesh must not link netlink, nftables or wireguard-go,
// and mesh/doc.go says the mesh never touches the network stack.
func TestMeshAndNetcfgDoNotLinkTheNetworkStack(t *testing.T) {
	forbidden := []string{
		"github.com/vishvananda/netlink",
		"github.com/mdlayher/netlink",
		"github.com/google/nftables",
		"golang.zx2c4.com/wireguard/device",
		"golang.zx2c4.com/wireguard/tun",
		"golang.zx2c4.com/wireguard/wgctrl/internal", // wgctrl's OS drivers
		"github.com/booture/booture/netcfg/linuxnet",
	}
	isForbidden := func(d string) bool {
		if d == "golang.zx2c4.com/wireguard/wgctrl" { // the client, not wgtypes
			return true
		}
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, f+"/") {
				return true
			}
		}
		return false
	}
	// The check must be able to see a dependency: the Linux applier has them.
	blind := true
	for _, p := range goList(t, "-deps", "github.com/booture/booture/netcfg/linuxnet") {
		if isForbidden(p.ImportPath) && p.ImportPath != "github.com/booture/booture/netcfg/linuxnet" {
			blind = false
		}
	}
	if blind {
		t.Fatal("go list does not show linuxnet's dependency on netlink: the check below would be blind")
	}
	for _, p := range goList(t, "-deps", "github.com/booture/booture/mesh", "github.com/booture/booture/netcfg",
		"github.com/booture/booture/key", "github.com/booture/booture/members") {
		if isForbidden(p.ImportPath) {
			t.Errorf("mesh, netcfg, key or members depends on %s", p.ImportPath)
		}
	}
}

func TestGofmt(t *testing.T) {
	if _, err := exec.LookPath("gofmt"); err != nil {
		t.Skip("gofmt is not on PATH")
	}
	out, err := exec.Command("gofmt", "-l", "../..").Output()
	if err != nil {
		t.Fatalf("gofmt: %v", err)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("files not formatted with gofmt:\n%s", s)
	}
}
