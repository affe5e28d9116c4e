#!/usr/bin/env bash
# Builds booture's Debian packages with dpkg-deb: build.sh OUTDIR [ARCH...]
# (Debian architectures: amd64, arm64, armhf; default all three).
# DEB_COMPRESS: xz (default), gzip or none (faster, for tests).
# VERSION (default: git describe) becomes the package version. Static
# binaries (CGO_ENABLED=0), so the packages depend on nothing; man pages and
# shell completions are generated from the CLI itself (not kept in git).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${1:?usage: build.sh OUTDIR [amd64|arm64|armhf...]}
shift
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(amd64 arm64 armhf)
GO=${GO:-go}
export CGO_ENABLED=0

# A Debian version must start with a digit: v1.2.3-4-gabc -> 1.2.3+4+gabc,
# a bare commit hash (no tag yet; it may start with a digit) -> 0~gitHASH.
raw=${VERSION:-$(git -C "$top" describe --tags --always --dirty 2>/dev/null || echo dev)}
ver=${raw#v}
ver=${ver//-/+}
if [[ ! $ver =~ ^[0-9] ]] || [[ $raw =~ ^[0-9a-f]{7,40}(-dirty)?$ ]]; then
  ver="0~git${ver}"
fi
ldflags="-s -w -X github.com/booture/booture/internal/daemon.Version=$raw -X main.version=$raw"

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Man pages and completions, from a build for this machine.
( cd "$top" && "$GO" build -trimpath -tags gendocs -ldflags "$ldflags" -o "$work/host/booture" ./cmd/booture \
  && "$GO" build -trimpath -ldflags "$ldflags" -o "$work/host/bootured" ./cmd/bootured )
"$work/host/booture" gendocs "$work/docs"
# bootured has plain flags, not cobra: its page wraps its --help.
{
  echo ".TH BOOTURED 8 \"\" \"booture $raw\" \"booture\""
  echo ".SH NAME"
  echo "bootured \\- the booture daemon"
  echo ".SH SYNOPSIS"
  echo ".B bootured"
  echo "[flags]"
  echo ".SH DESCRIPTION"
  echo ".nf"
  "$work/host/bootured" --help 2>&1 | sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
  echo ".fi"
  echo ".SH FILES"
  echo "/etc/booture/booture.toml, /var/lib/booture, /run/booture/bootured.sock, /usr/lib/booture/plugins"
  echo ".SH SEE ALSO"
  echo ".BR booture (1)"
} >"$work/docs/man/bootured.8"

for arch in "${archs[@]}"; do
  case $arch in
    amd64) goenv=(GOARCH=amd64) ;;
    arm64) goenv=(GOARCH=arm64) ;;
    armhf) goenv=(GOARCH=arm GOARM=7) ;;
    *) echo "build.sh: unknown architecture $arch (amd64, arm64, armhf)" >&2; exit 2 ;;
  esac
  root=$work/$arch
  bin=$work/bin-$arch
  ( cd "$top" && env GOOS=linux "${goenv[@]}" "$GO" build -trimpath -ldflags "$ldflags" -o "$bin/" ./cmd/... )
  install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/sbin" "$root/usr/lib/booture/plugins" \
    "$root/usr/lib/systemd/system" "$root/etc/booture" "$root/usr/share/man/man1" "$root/usr/share/man/man8" \
    "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
    "$root/usr/share/fish/vendor_completions.d" "$root/usr/share/doc/booture"
  install -m 0755 "$bin/booture" "$root/usr/bin/"
  install -m 0755 "$bin/bootured" "$root/usr/sbin/"
  install -m 0755 "$bin"/booture-plugin-* "$root/usr/lib/booture/plugins/"
  install -m 0644 "$here/bootured.service" "$root/usr/lib/systemd/system/"
  # The example config with every setting commented out: the package must
  # not name the box or declare services; the defaults are shown.
  sed -e '/^[^#]/s/^/# /' "$top/examples/config/booture.toml" >"$root/etc/booture/booture.toml"
  chmod 0644 "$root/etc/booture/booture.toml"
  for f in "$work"/docs/man/*.1; do gzip -9n <"$f" >"$root/usr/share/man/man1/$(basename "$f").gz"; done
  gzip -9n <"$work/docs/man/bootured.8" >"$root/usr/share/man/man8/bootured.8.gz"
  install -m 0644 "$work/docs/completions/booture.bash" "$root/usr/share/bash-completion/completions/booture"
  install -m 0644 "$work/docs/completions/_booture" "$root/usr/share/zsh/vendor-completions/"
  install -m 0644 "$work/docs/completions/booture.fish" "$root/usr/share/fish/vendor_completions.d/"
  install -m 0644 "$top/README.md" "$root/usr/share/doc/booture/"
  for s in postinst prerm postrm; do install -m 0755 "$here/$s" "$root/DEBIAN/"; done
  echo /etc/booture/booture.toml >"$root/DEBIAN/conffiles"
  size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
  sed -e "s/@VERSION@/$ver/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" "$here/control" >"$root/DEBIAN/control"
  ( cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum >DEBIAN/md5sums )
  dpkg-deb --root-owner-group "-Z${DEB_COMPRESS:-xz}" --build "$root" "$out/booture_${ver}_${arch}.deb" >/dev/null
  echo "$out/booture_${ver}_${arch}.deb"
done
