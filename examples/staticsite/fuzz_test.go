package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzStaysInItsFolder asks for any path: nothing outside the folder, and
// no hidden file, is ever served.
func FuzzStaysInItsFolder(f *testing.F) {
	outside := f.TempDir()
	root := f.TempDir()
	for p, c := range map[string]string{
		filepath.Join(outside, "private.key"): "SECRET",
		filepath.Join(root, "index.html"):     "home",
		filepath.Join(root, ".env"):           "SECRET",
		filepath.Join(root, "a", ".git", "x"): "SECRET",
		filepath.Join(root, "a", "b.txt"):     "b",
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(root, "out")); err != nil {
		f.Fatal(err)
	}
	dir, err := os.OpenRoot(root)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { dir.Close() })
	for _, s := range []string{"/", "/out/private.key", "/.env", "/a/.git/x", "/a/", "/a/b.txt", "/../private.key", "/a/../.env"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, path string, listing bool) {
		h := &files{root: dir, listing: listing}
		r, err := http.NewRequest("GET", "http://site/", nil)
		if err != nil {
			t.Skip()
		}
		r.URL.Path = path
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if strings.Contains(w.Body.String(), "SECRET") || strings.Contains(w.Body.String(), ".git") || strings.Contains(w.Body.String(), ".env") {
			t.Errorf("GET %q: %d %q", path, w.Code, w.Body.String())
		}
	})
}
