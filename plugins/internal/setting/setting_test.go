package setting

import (
	"testing"
	"time"
)

func TestBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"": 7, "100MiB": 100 << 20, "100m": 100 << 20, "12G": 12 << 30, "1.5k": 1536,
		"1048576": 1 << 20, "unlimited": -1, "-1": -1, "10MB": 10e6, "2 GiB": 2 << 30,
	} {
		got, err := Bytes(map[string]string{"k": in}, "k", 7)
		if err != nil || got != want {
			t.Errorf("Bytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"lots", "-5", "1e400G", "12X"} {
		if _, err := Bytes(map[string]string{"k": in}, "k", 0); err == nil {
			t.Errorf("Bytes(%q) accepted", in)
		}
	}
}

func TestDurationAndURL(t *testing.T) {
	if d, err := Duration(map[string]string{"d": "90s"}, "d", 0); err != nil || d != 90*time.Second {
		t.Errorf("Duration = %v, %v", d, err)
	}
	if _, err := Duration(map[string]string{"d": "soon"}, "d", 0); err == nil {
		t.Error("bad duration accepted")
	}
	if u, err := URL(map[string]string{"u": "http://127.0.0.1:4000/"}, "u"); err != nil || u != "http://127.0.0.1:4000" {
		t.Errorf("URL = %q, %v", u, err)
	}
	if _, err := URL(map[string]string{"u": "127.0.0.1:4000"}, "u"); err == nil {
		t.Error("URL without scheme accepted")
	}
}
