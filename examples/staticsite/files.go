package main

import (
	"errors"
	"fmt"
	"html"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
)

// files serves the folder of one service. It never leaves the folder (an
// os.Root: a symbolic link that points outside is not followed, nor is
// ".."), never serves hidden files or folders (a name starting with '.',
// such as .git or .env: 404), and lists a folder without index.html only
// when listing is on (otherwise 404). The daemon may run plugins as root:
// a site folder must not become a way to read the rest of the disk.
type files struct {
	root    *os.Root
	listing bool
}

func (h *files) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := path.Clean("/" + r.URL.Path)
	name := strings.TrimPrefix(p, "/")
	if name == "" {
		name = "."
	}
	if hidden(name) {
		http.NotFound(w, r)
		return
	}
	f, fi, err := h.open(name)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer f.Close()
	if fi.IsDir() {
		if !strings.HasSuffix(r.URL.Path, "/") {
			// Relative links in the folder's page resolve under it.
			http.Redirect(w, r, path.Base(p)+"/", http.StatusMovedPermanently)
			return
		}
		idx, ifi, err := h.open(path.Join(name, "index.html"))
		if err == nil && ifi.Mode().IsRegular() {
			defer idx.Close()
			http.ServeContent(w, r, "index.html", ifi.ModTime(), idx)
			return
		}
		if err == nil {
			idx.Close()
		}
		if !h.listing {
			http.NotFound(w, r)
			return
		}
		h.list(w, r, f)
		return
	}
	if !fi.Mode().IsRegular() {
		http.NotFound(w, r) // devices, sockets, pipes
		return
	}
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}

// hidden reports whether a segment of the slash-separated name starts
// with a dot.
func hidden(name string) bool {
	for seg := range strings.SplitSeq(name, "/") {
		if strings.HasPrefix(seg, ".") && seg != "." {
			return true
		}
	}
	return false
}

func (h *files) open(name string) (*os.File, fs.FileInfo, error) {
	f, err := h.root.Open(name)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// fail answers an error of the folder: what is not there, or outside it,
// is 404; what may not be read is 403.
func (h *files) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, fs.ErrPermission) {
		http.Error(w, "403 forbidden", http.StatusForbidden)
		return
	}
	http.NotFound(w, r)
}

// list writes a folder's visible entries as links.
func (h *files) list(w http.ResponseWriter, r *http.Request, dir *os.File) {
	entries, err := dir.ReadDir(-1)
	if err != nil {
		http.Error(w, "403 forbidden", http.StatusForbidden)
		return
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") {
			continue
		}
		if e.IsDir() {
			n += "/"
		}
		names = append(names, n)
	}
	slices.Sort(names)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if r.Method == http.MethodHead {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<!doctype html>\n<meta charset=\"utf-8\">\n<title>%s</title>\n<ul>\n", html.EscapeString(r.URL.Path))
	for _, n := range names {
		u := url.URL{Path: n}
		fmt.Fprintf(&b, "<li><a href=\"%s\">%s</a></li>\n", html.EscapeString(u.String()), html.EscapeString(n))
	}
	b.WriteString("</ul>\n")
	_, _ = w.Write([]byte(b.String()))
}
