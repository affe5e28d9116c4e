package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Tools are the programs a lab runs, with the Debian packages that hold
// them.
var Tools = []struct{ Name, Package string }{
	{"ip", "iproute2"},
	{"ping", "iputils-ping"},
	{"wg", "wireguard-tools"},
	{"wg-quick", "wireguard-tools"},
	{"wireguard-go", "wireguard-go"},
	{"nft", "nftables"},
	{"curl", "curl"},
}

// EnvRequire, set to 1 (as in CI), makes Require fail a test instead of
// skipping it when the machine cannot run labs.
const EnvRequire = "BOOTURE_LAB_REQUIRE"

// Check returns why labs cannot run on this machine, or nil.
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("lab tests need root (network namespaces, WireGuard interfaces): run them as root, e.g. sudo go test ./test/lab/")
	}
	var missing, pkgs []string
	for _, t := range Tools {
		if _, err := exec.LookPath(t.Name); err != nil {
			missing = append(missing, t.Name)
			if !contains(pkgs, t.Package) {
				pkgs = append(pkgs, t.Package)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: install them with apt-get install %s", strings.Join(missing, ", "), strings.Join(pkgs, " "))
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("no /dev/net/tun (needed by the userspace WireGuard): %w", err)
	}
	return nil
}

// Require skips t, with the reason, unless labs can run here: as root, with
// the Tools installed and /dev/net/tun. With -short it skips too. When
// BOOTURE_LAB_REQUIRE=1 a missing requirement fails t instead.
func Require(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("lab test skipped with -short (it runs real bootures in network namespaces)")
	}
	if err := Check(); err != nil {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("lab: %v (%s=1 asks for lab tests)", err, EnvRequire)
		}
		t.Skipf("lab test skipped: %v", err)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
