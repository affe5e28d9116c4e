package gateway

import (
	"bytes"
	"encoding/json"
	"html/template"
	"net/http"
	"strconv"
	"sync"

	"github.com/booture/booture/catalog"
)

// pageData is what an error page shows.
type pageData struct {
	Title    string
	Message  string
	Detail   string
	Link     string
	LinkText string
	Retry    bool // a temporary condition: say so
	Status   int
	Booture  string
}

// style is shared by every page: self-contained, readable on a phone,
// follows the system's dark mode, health told by words and not only colour.
const style = `
:root{color-scheme:light dark;--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--muted:#6e7781}
@media (prefers-color-scheme:dark){:root{--ok:#3fb950;--warn:#d29922;--bad:#f85149;--muted:#8b949e}}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;max-width:46rem;margin:0 auto;padding:1rem 1.25rem;line-height:1.5}
h1{font-size:1.6rem;margin:.5rem 0}
h2{font-size:1.2rem;margin-top:2rem;padding-bottom:.25rem;border-bottom:1px solid var(--muted)}
ul.services{list-style:none;padding:0;margin:0}
ul.services li{padding:.6rem 0;border-bottom:1px solid color-mix(in srgb,var(--muted) 30%,transparent)}
ul.services a{font-weight:600;font-size:1.1rem}
.health{display:inline-block;font-size:.85rem;padding:0 .5rem;margin-left:.5rem;border:1px solid currentColor;border-radius:1rem;white-space:nowrap}
.healthy{color:var(--ok)}.degraded{color:var(--warn)}.unhealthy{color:var(--bad)}.unknown{color:var(--muted)}
.meta,.detail,footer{color:var(--muted);font-size:.9rem}
footer{margin-top:2.5rem}
`

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>` + style + `</style>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{- if .Detail}}
<p class="detail">{{.Detail}}</p>
{{- end}}
{{- if .Retry}}
<p class="detail">This is usually temporary.</p>
{{- end}}
{{- if .Link}}
<p><a href="{{.Link}}">{{.LinkText}}</a></p>
{{- end}}
</main>
<footer>Error {{.Status}}{{if .Booture}} · booture {{.Booture}}{{end}}</footer>
</body>
</html>
`))

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// writePage answers with an HTML page. Pages are rare (errors), so the
// template runs each time.
func (g *Gateway) writePage(w http.ResponseWriter, r *http.Request, s *snapshot, status int, p pageData) {
	p.Status, p.Booture = status, s.self.Name
	buf := bufPool.Get().(*bytes.Buffer)
	defer func() { buf.Reset(); bufPool.Put(buf) }()
	if err := pageTmpl.Execute(buf, p); err != nil {
		g.log.Error("rendering page", "err", err)
		http.Error(w, p.Title, status)
		return
	}
	writeBody(w, r, status, "text/html; charset=utf-8", buf.Bytes())
}

func writeBody(w http.ResponseWriter, r *http.Request, status int, ctype string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// portalGroup is one booture's services on the portal.
type portalGroup struct {
	Booture  string
	Services []catalog.Service
}

type portalData struct {
	Self   string
	Here   portalGroup
	Others []portalGroup
	Public bool
}

var portalTmpl = template.Must(template.New("portal").Funcs(template.FuncMap{
	"healthClass": healthClass,
	"healthText":  healthText,
	"accessText":  accessText,
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Self}} · booture</title>
<style>` + style + `</style>
</head>
<body>
<main>
<h1>Booture {{.Self}}</h1>
<p>{{if .Public}}The services of this booture open to the local network.{{else}}The services of this booture and of the other bootures of the mesh.{{end}}</p>
<section aria-labelledby="here">
<h2 id="here">On {{.Self}}</h2>
{{template "list" .Here.Services}}
</section>
{{- range $i, $g := .Others}}
<section aria-labelledby="b{{$i}}">
<h2 id="b{{$i}}">On {{$g.Booture}}</h2>
{{template "list" $g.Services}}
</section>
{{- end}}
</main>
<footer>Health as last checked by each booture. Machine-readable list: <a href="/api/services">/api/services</a>.</footer>
</body>
</html>
{{define "list"}}<ul class="services">
{{- range .}}
<li><a href="{{.URL}}">{{.Name}}</a><span class="health {{healthClass .Health}}">{{healthText .Health}}</span>
<div class="meta">Open to {{accessText .Access .Booture}}.</div>
{{- if .Message}}
<div class="detail">{{.Message}}</div>
{{- end}}
</li>
{{- else}}
<li>No service yet.</li>
{{- end}}
</ul>{{end}}
`))

// healthClass maps a health to a CSS class; anything unexpected (gossip
// from a newer booture) is unknown.
func healthClass(h catalog.Health) string {
	switch h {
	case catalog.HealthHealthy, catalog.HealthDegraded, catalog.HealthUnhealthy:
		return string(h)
	}
	return string(catalog.HealthUnknown)
}

func healthText(h catalog.Health) string {
	switch h {
	case catalog.HealthHealthy:
		return "✓ working"
	case catalog.HealthDegraded:
		return "! degraded"
	case catalog.HealthUnhealthy:
		return "✗ down"
	}
	return "? unknown"
}

func accessText(a catalog.Access, booture string) string {
	switch a {
	case catalog.AccessPublic:
		return "everyone, the local network included"
	case catalog.AccessMesh:
		return "members of every booture of the mesh"
	}
	return "members of " + booture + " only"
}

// portalFor returns the rendered portal and catalog for an audience,
// built once per snapshot: the LAN sees public services only.
func (s *snapshot) portalFor(aud Audience) *portalCache {
	i := 0
	if aud == AudiencePublic {
		i = 1
	}
	pc := &s.portal[i]
	pc.once.Do(func() {
		list := s.catalog
		if i == 1 {
			list = nil
			for _, sv := range s.catalog {
				if sv.Access == catalog.AccessPublic {
					list = append(list, sv)
				}
			}
		}
		if list == nil {
			list = []catalog.Service{}
		}
		pc.json, pc.err = json.Marshal(list)
		if pc.err != nil {
			return
		}
		pc.json = append(pc.json, '\n')
		d := portalData{Self: s.self.Name, Here: portalGroup{Booture: s.self.Name}, Public: i == 1}
		for _, sv := range list {
			switch {
			case sv.Booture == s.self.Name:
				d.Here.Services = append(d.Here.Services, sv)
			case len(d.Others) == 0 || d.Others[len(d.Others)-1].Booture != sv.Booture:
				d.Others = append(d.Others, portalGroup{Booture: sv.Booture, Services: []catalog.Service{sv}})
			default:
				last := &d.Others[len(d.Others)-1]
				last.Services = append(last.Services, sv)
			}
		}
		var buf bytes.Buffer
		if pc.err = portalTmpl.Execute(&buf, d); pc.err == nil {
			pc.html = buf.Bytes()
		}
	})
	return pc
}

func (g *Gateway) servePortal(w http.ResponseWriter, r *http.Request, s *snapshot, aud Audience) {
	var json bool
	switch r.URL.Path {
	case "/":
	case "/api/services":
		json = true
	default:
		g.writePage(w, r, s, http.StatusNotFound, pageData{Title: "Page not found", Message: "The portal has no such page.", Link: "/", LinkText: "Go to the portal of " + s.self.Name})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		g.writePage(w, r, s, http.StatusMethodNotAllowed, pageData{Title: "Method not allowed", Message: "The portal can only be read."})
		return
	}
	pc := s.portalFor(aud)
	if pc.err != nil {
		g.log.Error("rendering portal", "err", pc.err)
		g.writePage(w, r, s, http.StatusInternalServerError, pageData{Title: "Portal unavailable", Message: "The portal could not be shown."})
		return
	}
	if json {
		writeBody(w, r, http.StatusOK, "application/json", pc.json)
		return
	}
	writeBody(w, r, http.StatusOK, "text/html; charset=utf-8", pc.html)
}
