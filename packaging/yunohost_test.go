package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

const ynhDir = "yunohost"

var ynhScripts = []string{"install", "remove", "upgrade", "backup", "restore", "change_url"}

// TestYunoHostManifest parses the manifest and checks what YunoHost's
// manifest v2 needs and what the scripts rely on: the ports (opened in the
// firewall by the ports resource, read by the scripts as $port and
// $port_gossip) and one Debian package per architecture.
func TestYunoHostManifest(t *testing.T) {
	type port struct {
		Default int
		Fixed   bool
		Exposed any
	}
	type arch struct{ URL, SHA256 string }
	var m struct {
		PackagingFormat int `toml:"packaging_format"`
		ID, Name        string
		Version         string
		Integration     struct {
			HelpersVersion string   `toml:"helpers_version"`
			Architectures  []string `toml:"architectures"`
			MultiInstance  bool     `toml:"multi_instance"`
		}
		Install   map[string]map[string]any
		Resources struct {
			Sources map[string]struct {
				Format  string
				Extract bool
				Rename  string
				AMD64   arch `toml:"amd64"`
				ARM64   arch `toml:"arm64"`
				ARMHF   arch `toml:"armhf"`
			}
			Ports map[string]port
		}
	}
	md, err := toml.DecodeFile(filepath.Join(ynhDir, "manifest.toml"), &m)
	if err != nil {
		t.Fatalf("manifest.toml: %v", err)
	}
	if m.PackagingFormat != 2 || m.ID != "booture" || m.Integration.HelpersVersion != "2.1" {
		t.Errorf("packaging_format %d, id %q, helpers_version %q", m.PackagingFormat, m.ID, m.Integration.HelpersVersion)
	}
	if !strings.Contains(m.Version, "~ynh") {
		t.Errorf("version %q lacks ~ynhN", m.Version)
	}
	if m.Integration.MultiInstance {
		t.Error("multi_instance: one bootured per machine")
	}
	if _, ok := m.Install["booture_name"]; !ok {
		t.Error("no booture_name install question (conf/booture.toml uses it)")
	}
	want := map[string]port{
		"main":   {Default: 51820, Fixed: true, Exposed: "UDP"},
		"gossip": {Default: 7946, Fixed: true, Exposed: "Both"},
	}
	for name, w := range want {
		if got := m.Resources.Ports[name]; got != w {
			t.Errorf("ports.%s = %+v, want %+v", name, got, w)
		}
	}
	if g, ok := m.Resources.Ports["gateway"]; !ok || g.Exposed != nil {
		t.Errorf("ports.gateway = %+v, %v: want a port not exposed", g, ok)
	}
	src, ok := m.Resources.Sources["main"]
	if !ok || src.Rename != "booture.deb" || src.Extract {
		t.Errorf("sources.main = %+v: want a .deb renamed booture.deb, not extracted", src)
	}
	for a, s := range map[string]arch{"amd64": src.AMD64, "arm64": src.ARM64, "armhf": src.ARMHF} {
		if !strings.HasSuffix(s.URL, "_"+a+".deb") || len(s.SHA256) != 64 {
			t.Errorf("sources.main.%s = %+v", a, s)
		}
		if !slices.Contains(m.Integration.Architectures, a) {
			t.Errorf("architectures lacks %s", a)
		}
	}
	if un := md.Undecoded(); len(un) > 0 {
		t.Logf("keys not checked: %v", un)
	}
}

// TestYunoHostScriptsLint runs bash -n and shellcheck on every script.
func TestYunoHostScriptsLint(t *testing.T) {
	files := []string{filepath.Join(ynhDir, "scripts", "_common.sh")}
	for _, s := range ynhScripts {
		files = append(files, filepath.Join(ynhDir, "scripts", s))
	}
	for _, f := range files {
		if out, err := exec.Command("bash", "-n", f).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", f, err, out)
		}
	}
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Skip("shellcheck missing (scripts/install-deps.sh installs it)")
	}
	cmd := exec.Command("shellcheck", append([]string{"-s", "bash", "-x", "-P", "SCRIPTDIR"}, files...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

// stubs stand for YunoHost's helpers and for the commands that would
// change the machine: each records its call in $STUB_LOG, one line per
// call. ynh_config_add renders its template like YunoHost's (__FOO_BAR__
// becomes $foo_bar) into $STUB_ROOT.
const stubs = `
rec() { printf '%s\n' "$*" >>"$STUB_LOG"; }
ynh_script_progression() { :; }
ynh_print_info() { :; }
ynh_die() { rec ynh_die "$@"; exit 1; }
ynh_hide_warnings() { "$@"; }
ynh_safe_rm() { rec ynh_safe_rm "$@"; }
ynh_backup() { rec ynh_backup "$@"; }
ynh_restore() { rec ynh_restore "$@"; }
ynh_systemctl() { rec ynh_systemctl "$@"; }
ynh_setup_source() { rec ynh_setup_source; local d=${1#--dest_dir=}; : >"$d/booture.deb"; }
ynh_config_add() {
	local tpl=${1#--template=} dest=${2#--destination=}
	rec ynh_config_add "$tpl" "$dest"
	command mkdir -p "$STUB_ROOT$(dirname "$dest")"
	local s v
	s=$(<"../conf/$tpl")
	for v in $(grep -o '__[A-Z_]*__' "../conf/$tpl" | sort -u); do
		local name=${v#__}; name=${name%__}; name=${name,,}
		s=${s//$v/${!name}}
	done
	printf '%s\n' "$s" >"$STUB_ROOT$dest"
}
mkdir() { rec mkdir "$@"; }
chmod() { rec chmod "$@"; }
systemctl() { rec systemctl "$@"; }
apt-get() { rec apt-get "$@"; }
yunohost() { rec yunohost "$@"; }
`

// runYnhScript runs one of the app's scripts from dir with the stubs in
// place of /usr/share/yunohost/helpers and YunoHost's settings in the
// environment, and returns the recorded calls.
func runYnhScript(t *testing.T, script, dir string, env ...string) ([]string, string) {
	t.Helper()
	tmp := t.TempDir()
	stubFile := filepath.Join(tmp, "helpers")
	if err := os.WriteFile(stubFile, []byte(stubs), 0o644); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(tmp, "calls")
	root := filepath.Join(tmp, "root")
	// The scripts source the helpers by absolute path: a function named
	// source, exported to the script's bash, sends that one to the stubs.
	wrapper := `source() { if [ "$1" = /usr/share/yunohost/helpers ]; then builtin source "$STUB_HELPERS"; else builtin source "$@"; fi; }
export -f source
exec bash "$0"`
	abs, err := filepath.Abs(filepath.Join(dir, script))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", wrapper, abs)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "STUB_HELPERS="+stubFile, "STUB_LOG="+log, "STUB_ROOT="+root,
		"app=booture", "booture_name=diois", "port=51820", "port_gossip=7946", "port_gateway=8780")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil && script != "change_url" {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	b, _ := os.ReadFile(log)
	return strings.Split(strings.TrimSpace(string(b)), "\n"), root
}

// index returns the position of the first call starting with prefix.
func index(t *testing.T, calls []string, prefix string) int {
	t.Helper()
	for i, c := range calls {
		if strings.HasPrefix(c, prefix) {
			return i
		}
	}
	t.Errorf("no call %q in:\n%s", prefix, strings.Join(calls, "\n"))
	return -1
}

func TestYunoHostInstallScript(t *testing.T) {
	scripts := filepath.Join(ynhDir, "scripts")
	calls, root := runYnhScript(t, "install", scripts)

	conf := index(t, calls, "ynh_config_add booture.toml /etc/booture/yunohost.toml")
	dropin := index(t, calls, "ynh_config_add systemd-override.conf /etc/systemd/system/bootured.service.d/yunohost.conf")
	index(t, calls, "ynh_config_add dnsmasq.conf /etc/dnsmasq.d/booture")
	index(t, calls, "ynh_systemctl --service=dnsmasq --action=restart")
	src := index(t, calls, "ynh_setup_source")
	apt := index(t, calls, "apt-get install -y -q -o Dpkg::Options::=--force-confold /")
	index(t, calls, "yunohost service add bootured --description=booture: mesh, member VPN and services --needs_exposed_ports 51820 7946")
	start := index(t, calls, "ynh_systemctl --service=bootured --action=restart")
	// The package's postinst starts bootured: its configuration must be
	// there before.
	if !(conf < apt && dropin < apt && src < apt && apt < start) {
		t.Errorf("order: config %d, drop-in %d, source %d, apt-get %d, start %d", conf, dropin, src, apt, start)
	}
	if !strings.HasSuffix(calls[apt], "/booture.deb") {
		t.Errorf("apt-get installs %q, want the downloaded booture.deb", calls[apt])
	}

	var cfg map[string]any
	if _, err := toml.DecodeFile(filepath.Join(root, "etc/booture/yunohost.toml"), &cfg); err != nil {
		t.Fatalf("rendered yunohost.toml: %v", err)
	}
	wantCfg := map[string]any{"name": "diois", "wg_port": int64(51820), "gossip_port": int64(7946), "http_port": int64(8780), "lan_http": "off"}
	for k, v := range wantCfg {
		if cfg[k] != v {
			t.Errorf("yunohost.toml %s = %v, want %v", k, cfg[k], v)
		}
	}
	dropinText, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/bootured.service.d/yunohost.conf"))
	if err != nil || !strings.Contains(string(dropinText), "ExecStart=\nExecStart=/usr/sbin/bootured --config /etc/booture/yunohost.toml") {
		t.Errorf("drop-in: %v\n%s", err, dropinText)
	}
}

func TestYunoHostRemoveScript(t *testing.T) {
	scripts := filepath.Join(ynhDir, "scripts")
	calls, _ := runYnhScript(t, "remove", scripts)
	index(t, calls, "apt-get remove -y -q booture")
	index(t, calls, "ynh_safe_rm /etc/booture/yunohost.toml")
	for _, c := range calls {
		if strings.Contains(c, "purge") || strings.Contains(c, "/var/lib/booture") {
			t.Errorf("remove without --purge touches the state: %q", c)
		}
	}
	calls, _ = runYnhScript(t, "remove", scripts, "YNH_APP_PURGE=1")
	index(t, calls, "apt-get purge -y -q booture")
}

// TestYunoHostBackupRestore checks that backup declares the state and the
// configuration, and that restore brings them back before the package
// starts the daemon. YunoHost runs both from a directory beside the app's
// settings (../settings/scripts).
func TestYunoHostBackupRestore(t *testing.T) {
	tmp := t.TempDir()
	settings := filepath.Join(tmp, "settings")
	work := filepath.Join(tmp, "work")
	for _, d := range []string{filepath.Join(settings, "scripts"), filepath.Join(settings, "conf"), work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"scripts/_common.sh", "scripts/backup", "scripts/restore"} {
		b, err := os.ReadFile(filepath.Join(ynhDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(settings, f), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(work, "backup"), []byte("exec bash ../settings/scripts/backup\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "restore"), []byte("exec bash ../settings/scripts/restore\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	calls, _ := runYnhScript(t, "backup", work)
	for _, p := range []string{"/var/lib/booture", "/etc/booture", "/etc/systemd/system/bootured.service.d/yunohost.conf", "/etc/dnsmasq.d/booture"} {
		index(t, calls, "ynh_backup "+p)
	}
	calls, _ = runYnhScript(t, "restore", work)
	stop := index(t, calls, "ynh_systemctl --service=bootured --action=stop")
	state := index(t, calls, "ynh_restore /var/lib/booture")
	apt := index(t, calls, "apt-get install")
	start := index(t, calls, "ynh_systemctl --service=bootured --action=restart")
	if !(stop < state && state < apt && apt < start) {
		t.Errorf("order: stop %d, state %d, apt-get %d, start %d", stop, state, apt, start)
	}
}

func TestYunoHostChangeURLRefuses(t *testing.T) {
	calls, _ := runYnhScript(t, "change_url", filepath.Join(ynhDir, "scripts"))
	index(t, calls, "ynh_die")
}
