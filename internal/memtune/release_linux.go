package memtune

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Starting up runs code all over the daemon's 21 MB binary (every
// package's initialisation, the configuration, the first reconcile, the
// plugins' handshakes), and the kernel maps it in by large chunks: about
// 18 MB of it end up resident, while a daemon at rest with 20 peers runs
// under half of it. So, once started and at rest, the daemon hands its
// binary's pages back to the kernel (MADV_PAGEOUT, Linux 5.4+); the pages
// it still runs are read back from the file as they are used, one by one
// (MADV_RANDOM: readahead would bring back code it no longer needs, about
// 5 MB more). Only read-only mappings are released: the kernel reclaims
// those pages for free, as it would under memory pressure.

// releaseStartupCode releases the pages of the binary and logs what it did.
func releaseStartupCode(log *slog.Logger) {
	n, err := pageOutExecutable()
	if err != nil {
		// An old kernel or a binary on tmpfs: nothing is lost but memory.
		log.Debug("could not release the start-up code's memory", "err", err)
		return
	}
	log.Debug("released the start-up code's memory", "mapped_bytes", n)
}

// pageOutExecutable asks the kernel to reclaim the pages of the running
// executable's read-only mappings; it returns the size of the mappings.
func pageOutExecutable() (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return 0, err
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	regions, err := readOnlyMappings(f, exe)
	if err != nil {
		return 0, fmt.Errorf("reading /proc/self/maps: %w", err)
	}
	if len(regions) == 0 {
		return 0, fmt.Errorf("no read-only mapping of %s in /proc/self/maps", exe)
	}
	total := 0
	for _, r := range regions {
		for _, advice := range []int{unix.MADV_RANDOM, unix.MADV_PAGEOUT} {
			if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r.start, r.end-r.start, uintptr(advice)); errno != 0 {
				return total, fmt.Errorf("madvise(%#x-%#x, %d): %w", r.start, r.end, advice, errno)
			}
		}
		total += int(r.end - r.start)
	}
	return total, nil
}

type region struct{ start, end uintptr }

// readOnlyMappings returns the read-only mappings of path in a
// /proc/PID/maps listing: code and constant data, which the kernel can
// always read back from the file.
func readOnlyMappings(r io.Reader, path string) ([]region, error) {
	var out []region
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// 00400000-00d3c000 r-xp 00000000 fe:00 10182904   /usr/sbin/bootured
		f := strings.Fields(sc.Text())
		if len(f) < 6 || strings.Join(f[5:], " ") != path || len(f[1]) < 2 || f[1][:2] != "r-" {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, region{uintptr(start), uintptr(end)})
	}
	return out, sc.Err()
}
