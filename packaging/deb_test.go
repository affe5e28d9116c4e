package packaging

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// debArch is the Debian name of this machine's architecture.
func debArch(t *testing.T) string {
	switch runtime.GOARCH {
	case "amd64", "arm64":
		return runtime.GOARCH
	case "arm":
		return "armhf"
	}
	t.Skipf("no Debian package for %s", runtime.GOARCH)
	return ""
}

func run(t *testing.T, ctx context.Context, name string, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestDebInstall builds the package of this machine's architecture,
// installs it (dpkg, through apt-get for its lock timeout), runs both commands, verifies the installed unit,
// then purges it and checks that purge removed the state. It changes the
// machine, so it runs only as root, and never where booture is installed
// or has state already.
func TestDebInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and installs a package")
	}
	if os.Geteuid() != 0 {
		t.Skip("installing a package needs root")
	}
	for _, tool := range []string{"dpkg-deb", "dpkg", "apt-get", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s missing", tool)
		}
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "booture").Output(); err == nil && strings.Contains(string(out), "installed") {
		t.Skip("booture is installed on this machine: not touching it")
	}
	if _, err := os.Stat("/var/lib/booture"); err == nil {
		t.Skip("/var/lib/booture exists: purging would delete it")
	}
	arch := debArch(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	out := t.TempDir()
	cmd := exec.CommandContext(ctx, "deb/build.sh", out, arch)
	cmd.Env = append(os.Environ(), "DEB_COMPRESS=gzip", "VERSION=1.2.3-test")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, b)
	}
	deb := filepath.Join(out, "booture_1.2.3+test_"+arch+".deb")

	contents := run(t, ctx, "dpkg-deb", "--contents", deb)
	for _, want := range []string{
		"./usr/sbin/bootured", "./usr/bin/booture", "./usr/lib/booture/plugins/booture-plugin-nextcloud",
		"./usr/lib/systemd/system/bootured.service", "./etc/booture/booture.toml",
		"./usr/share/man/man1/booture.1.gz", "./usr/share/man/man8/bootured.8.gz",
		"./usr/share/bash-completion/completions/booture", "./usr/share/zsh/vendor-completions/_booture",
	} {
		if !strings.Contains(contents, want+"\n") {
			t.Errorf("package lacks %s", want)
		}
	}
	if got := run(t, ctx, "dpkg-deb", "--info", deb, "conffiles"); strings.TrimSpace(got) != "/etc/booture/booture.toml" {
		t.Errorf("conffiles = %q", got)
	}

	// dpkg through apt-get, which waits for the dpkg lock that another
	// installation on the machine may hold (dpkg -i fails at once).
	apt := func(args ...string) string {
		return run(t, ctx, "apt-get", append([]string{"-q", "-y", "-o", "DPkg::Lock::Timeout=300", "--no-install-recommends"}, args...)...)
	}
	t.Cleanup(func() {
		exec.Command("apt-get", "-q", "-y", "-o", "DPkg::Lock::Timeout=300", "purge", "booture").Run()
	})
	apt("install", deb)
	if got := run(t, ctx, "booture", "--version"); !strings.Contains(got, "1.2.3-test") {
		t.Errorf("booture --version = %q", got)
	}
	if got := run(t, ctx, "/usr/sbin/bootured", "--help"); !strings.Contains(got, "Usage: bootured") {
		t.Errorf("bootured --help = %q", got)
	}
	// The installed config is all comments: a daemon started from the
	// package has every default, and the config must still parse.
	if got := run(t, ctx, "/usr/sbin/bootured", "--config", "/etc/booture/booture.toml", "--help"); !strings.Contains(got, "Usage: bootured") {
		t.Errorf("bootured --config ... --help = %q", got)
	}
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		run(t, ctx, "systemd-analyze", "verify", "/usr/lib/systemd/system/bootured.service")
	} else {
		t.Log("systemd-analyze missing: unit not verified")
	}

	// remove keeps the state, purge deletes it.
	if err := os.MkdirAll("/var/lib/booture", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/var/lib/booture/marker", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	apt("remove", "booture")
	if _, err := os.Stat("/var/lib/booture/marker"); err != nil {
		t.Errorf("remove deleted the state: %v", err)
	}
	if _, err := os.Stat("/usr/sbin/bootured"); err == nil {
		t.Error("remove left /usr/sbin/bootured")
	}
	apt("purge", "booture")
	if _, err := os.Stat("/var/lib/booture"); !os.IsNotExist(err) {
		t.Errorf("purge left /var/lib/booture: %v", err)
	}
	if _, err := os.Stat("/etc/booture"); !os.IsNotExist(err) {
		t.Errorf("purge left /etc/booture: %v", err)
	}
}

// TestUnitSecurity logs systemd's exposure score of the unit (0 is best,
// 10 worst) and fails if the hardening regresses past "OK".
func TestUnitSecurity(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze missing")
	}
	out, err := exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", "deb/bootured.service").CombinedOutput()
	if err != nil {
		t.Skipf("systemd-analyze security --offline: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for bootured.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no score in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security: exposure %.1f", score)
	if score > 4.0 {
		t.Errorf("exposure %.1f, want at most 4.0:\n%s", score, out)
	}
}
