package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/booture/booture/internal/lab"
)

// ldflags are the Makefile's.
func (b *bench) ldflags() string {
	v := strings.TrimSpace(b.res.Machine.Commit)
	if v == "" {
		v = "dev"
	}
	return "-s -w -X github.com/booture/booture/internal/daemon.Version=" + v
}

// goBuild runs go build with env added; it returns the command line.
func (b *bench) goBuild(env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(b.ctx, "go", append([]string{"build"}, args...)...)
	env = append([]string{"CGO_ENABLED=0"}, env...) // as the Makefile builds
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	line := strings.TrimSpace(strings.Join(env, " ") + " go build " + shellJoin(args))
	if out, err := cmd.CombinedOutput(); err != nil {
		return line, fmt.Errorf("%s: %w\n%s", line, err, out)
	}
	return line, nil
}

// buildSection builds the programs the labs run, with the Makefile's
// flags, and the upstream wireguard-go at the version go.mod pins, then
// (except in a quick run) cross-compiles for the Raspberry Pi's
// architectures and records the binaries' sizes.
func (b *bench) buildSection() error {
	dir := filepath.Join(b.tmp, "bin")
	flags := []string{"-trimpath", "-ldflags", b.ldflags()}
	if _, err := b.goBuild(nil, append(slicesConcat(flags, []string{"-o", dir + "/"}), "./cmd/...")...); err != nil {
		return err
	}
	if _, err := b.goBuild(nil, "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, "booture-plugin-staticsite"), "./examples/staticsite"); err != nil {
		return err
	}
	// The standalone upstream wireguard-go: the module the daemon embeds,
	// at the version of go.mod, built as its own program.
	if _, err := b.goBuild(nil, "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, "wireguard-go-upstream"), "golang.zx2c4.com/wireguard"); err != nil {
		return err
	}
	// The peers of the footprint's biggest idle mesh.
	if _, err := b.goBuild(nil, "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, "peersim"), "./bench/cmd/peersim"); err != nil {
		return err
	}
	// lab.Build's names: bootured, booture, staticsite.
	if err := os.Link(filepath.Join(dir, "booture-plugin-staticsite"), filepath.Join(dir, "staticsite")); err != nil {
		return err
	}
	b.bin = &lab.Binaries{Dir: dir}
	b.res.Machine.Tools += ", wireguard-go (upstream, built from go.mod's golang.zx2c4.com/wireguard) " + firstLine(runOut(filepath.Join(dir, "wireguard-go-upstream"), "--version"))
	b.res.Machine.Tools += ", wireguard-go (Debian) " + firstLine(runOut("wireguard-go", "--version"))

	if b.quick {
		// A smoke run: the cross builds compile everything twice more
		// (minutes on a cold cache) for figures nobody reads there.
		return nil
	}
	const sec, table = "Footprint", "Binary sizes (stripped, -trimpath, as `make build` / `make cross`)"
	for _, arch := range []struct{ name, goarch, goarm string }{
		{"linux/amd64", "amd64", ""}, {"linux/arm64", "arm64", ""}, {"linux/arm (GOARM=7)", "arm", "7"},
	} {
		out := filepath.Join(b.tmp, "cross", arch.goarch)
		env := []string{"GOOS=linux", "GOARCH=" + arch.goarch}
		if arch.goarm != "" {
			env = append(env, "GOARM="+arch.goarm)
		}
		line, err := b.goBuild(env, append(slicesConcat(flags, []string{"-o", out + "/"}), "./cmd/...")...)
		if err != nil {
			return err
		}
		line2, err := b.goBuild(env, "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(out, "booture-plugin-staticsite"), "./examples/staticsite")
		if err != nil {
			return err
		}
		ents, _ := os.ReadDir(out)
		for _, e := range ents {
			fi, err := e.Info()
			if err != nil {
				continue
			}
			cmd := line + " && stat -c %s " + e.Name()
			if e.Name() == "booture-plugin-staticsite" {
				cmd = line2 + " && stat -c %s " + e.Name()
			}
			b.figure(sec, table, e.Name()+" "+arch.name, "MB", cmd).add(float64(fi.Size()) / 1e6)
		}
	}
	b.note(sec, "Binary sizes are one build each (a build is deterministic): median = min = max. MB are 10^6 bytes.")
	return nil
}

func slicesConcat(a, b []string) []string { return append(append([]string(nil), a...), b...) }

// run runs a command in the root namespace (tools' versions only) and
// returns its output.
func runOut(name string, args ...string) string {
	out, _ := exec.Command(name, args...).CombinedOutput()
	return strings.TrimSpace(string(out))
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(l)
}

// shellJoin quotes args for a shell command line.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " '\"$&|;<>*?()[]{}\\\t") {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		} else {
			q[i] = a
		}
	}
	return strings.Join(q, " ")
}
