package memtune

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestReadOnlyMappings(t *testing.T) {
	const maps = `00400000-00d3c000 r-xp 00000000 fe:00 10182904                           /usr/sbin/boot ured
00d3c000-017a0000 r--p 0093c000 fe:00 10182904                           /usr/sbin/boot ured
017a0000-01821000 rw-p 013a0000 fe:00 10182904                           /usr/sbin/boot ured
01821000-038eb000 rw-p 00000000 00:00 0
7fa42b13b000-7fa42b291000 r-xp 00026000 fe:00 326269                     /usr/lib/x86_64-linux-gnu/libc.so.6
zzzz-0040 r-xp 00000000 fe:00 10182904                           /usr/sbin/boot ured
garbage
`
	got, err := readOnlyMappings(strings.NewReader(maps), "/usr/sbin/boot ured")
	if err != nil {
		t.Fatal(err)
	}
	want := []region{{0x400000, 0xd3c000}, {0xd3c000, 0x17a0000}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("readOnlyMappings = %x, want %x (code and constants, not data, not other files)", got, want)
	}
}

func TestPageOutExecutable(t *testing.T) {
	n, err := pageOutExecutable()
	if errors.Is(err, unix.EINVAL) {
		t.Skipf("this kernel has no MADV_PAGEOUT: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if n < 1<<20 {
		t.Errorf("released %d bytes of mappings, want the test binary's code (megabytes)", n)
	}
}
