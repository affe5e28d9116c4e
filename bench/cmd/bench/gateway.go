package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/internal/lab"
)

// Ports on h1's loopback for the gateway benchmark.
const (
	sitePort  = 18081 // the staticsite plugin's own server: the upstream
	nginxPort = 18080
)

// pluginLab makes a lab of two bootures in one mesh; h1 runs the example
// staticsite plugin (service "site", mesh access, its server on
// 127.0.0.1:sitePort) and, with all, the three first-party plugins too.
func (b *bench) pluginLab(all bool) (*lab.Lab, string, error) {
	l, err := b.newLab(lab.Options{Hosts: 2})
	if err != nil {
		return nil, "", err
	}
	dir := filepath.Join(l.Dir, "h1-files")
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		l.Close()
		return nil, "", err
	}
	page := "<!doctype html><title>booture</title><p>Bonjour, a small page of a booture's site.</p>\n"
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte(page), 0o644); err != nil {
		l.Close()
		return nil, "", err
	}
	conf := fmt.Sprintf("[[service]]\nplugin = \"staticsite\"\nname = \"site\"\naccess = \"mesh\"\n[service.settings]\nroot = %q\nlisten = \"127.0.0.1:%d\"\n", www, sitePort)
	if all {
		for i, p := range []string{"nextcloud", "mastodon", "peertube"} {
			conf += fmt.Sprintf("\n[[service]]\nplugin = %q\nupstream = \"http://127.0.0.1:%d\"\naccess = \"mesh\"\n", p, 18090+i)
		}
	}
	cf := filepath.Join(dir, "booture.toml")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		l.Close()
		return nil, "", err
	}
	l.H(1).Args = []string{"--config", cf, "--plugin-dir", b.bin.Dir}
	if err := b.formMesh(l, 60*time.Second); err != nil {
		l.Close()
		return nil, "", err
	}
	st, err := status(l.H(1))
	if err != nil {
		l.Close()
		return nil, "", err
	}
	host := "site." + st.Name + ".booture.internal"
	err = lab.Eventually(b.ctx, 60*time.Second, 250*time.Millisecond, func() error {
		var svcs []api.Service
		if err := l.H(1).CLIJSON(&svcs, "services"); err != nil {
			return err
		}
		for _, s := range svcs {
			if s.Name == "site" && s.Health == "healthy" {
				return nil
			}
		}
		return fmt.Errorf("site not healthy yet: %+v", svcs)
	})
	if err != nil {
		l.Close()
		return nil, "", err
	}
	return l, host, nil
}

// gateway compares requests/s and latency of the same upstream reached
// directly, through the booture gateway and through nginx, in one run; and
// measures the plugins' idle RSS.
func (b *bench) gateway() error {
	const sec = "Gateway"
	l, host, err := b.pluginLab(true)
	if err != nil {
		return err
	}
	defer l.Close()
	h1 := l.H(1)
	st, err := status(h1)
	if err != nil {
		return err
	}

	// Plugins' idle RSS.
	b.sleep(3 * time.Second)
	procs := lab.Children(h1.PID())
	for range b.rounds(3, 2) {
		for pid, name := range procs {
			if !strings.HasPrefix(name, "booture-plugin-") {
				continue
			}
			rss, err := lab.ProcMem(pid, "VmRSS")
			if err != nil {
				continue
			}
			b.figure("Footprint", "Plugin processes, idle (VmRSS, started and supervised by bootured)", name, "MB",
				"grep VmRSS /proc/PID/status of each child of bootured (h1 runs the 4 plugins, 2 s between runs)").add(float64(rss) / 1e6)
		}
		b.sleep(2 * time.Second)
	}
	if rss, err := lab.ProcMem(h1.PID(), "VmRSS"); err == nil {
		b.figure("Footprint", "Plugin processes, idle (VmRSS, started and supervised by bootured)", "bootured itself (4 services, 1 peer)", "MB", "grep VmRSS /proc/PID/status").add(float64(rss) / 1e6)
	}

	// nginx as a reverse proxy on h1's loopback.
	ndir := filepath.Join(b.tmp, "nginx")
	for _, d := range []string{"tmp", "logs"} {
		if err := os.MkdirAll(filepath.Join(ndir, d), 0o755); err != nil {
			return err
		}
	}
	nconf := filepath.Join(ndir, "nginx.conf")
	if err := os.WriteFile(nconf, []byte(fmt.Sprintf(nginxConf, ndir, sitePort, nginxPort)), 0o644); err != nil {
		return err
	}
	ngx, err := h1.Spawn(b.logPath("nginx"), nil, "nginx", "-e", filepath.Join(ndir, "logs", "error.log"), "-p", ndir, "-c", nconf, "-g", "daemon off;")
	if err != nil {
		return err
	}
	l.OnClose(ngx)
	defer ngx.Stop()

	type target struct {
		name, url, host string
	}
	targets := []target{
		{"direct (the staticsite plugin's own server)", fmt.Sprintf("http://127.0.0.1:%d/", sitePort), ""},
		{"through the booture gateway", "http://" + st.MeshIPv4 + "/", host},
		{"through nginx (reverse proxy, upstream keepalive)", fmt.Sprintf("http://127.0.0.1:%d/", nginxPort), ""},
	}
	for _, t := range targets {
		args := []string{"curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", t.url}
		if t.host != "" {
			args = append(args, "-H", "Host: "+t.host)
		}
		err := lab.Eventually(b.ctx, 15*time.Second, 200*time.Millisecond, func() error {
			out, err := nsRun(&h1.NS, 10*time.Second, args...)
			if err == nil && out != "200" {
				err = fmt.Errorf("HTTP %s", out)
			}
			if err != nil {
				return fmt.Errorf("%s: %w (nginx log: %s)", t.name, err, readTail(ngx.Log))
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	secs := int(b.dur(10*time.Second, 3*time.Second).Seconds())
	const conns = 32
	b.note(sec, "The same small upstream (the staticsite plugin's HTTP server, a %d-byte page) is reached directly, through bootured's gateway (its mesh address, port 80, by host name `%s`) and through Debian's nginx %s as a reverse proxy on a loopback port (worker_processes auto, keepalive to the upstream, access log off; started and stopped by the benchmark), "+
		"all from h1 itself with wrk (%d threads, %d connections, %d s), round by round in the same run. wrk, the proxy and the upstream share the machine's %d cores: the figures are the cost of each path on this CPU, not a network limit. "+
		"The plugins' idle RSS is in Footprint.",
		92, host, firstLine(runOut("dpkg-query", "-W", "-f=${Version}", "nginx-light")), 2, conns, secs, b.res.Machine.Cores)
	figs := map[string][3]*Figure{}
	for r := 0; r < b.rounds(3, 1); r++ {
		for _, t := range targets {
			args := []string{"wrk", "-t2", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", secs), "--latency"}
			if t.host != "" {
				args = append(args, "-H", "Host: "+t.host)
			}
			args = append(args, t.url)
			cmd := nsCmd("h1", args...)
			fr := b.figure(sec, "HTTP requests/s (wrk, same run, same upstream)", t.name, "req/s", cmd)
			f50 := b.figure(sec, "Latency p50 (wrk)", t.name, "ms", cmd)
			f99 := b.figure(sec, "Latency p99 (wrk)", t.name, "ms", cmd)
			figs[t.name] = [3]*Figure{fr, f50, f99}
			out, err := nsRun(&h1.NS, time.Duration(secs+30)*time.Second, args...)
			if err != nil {
				fr.fail(err)
				continue
			}
			rps, p50, p99, errs, err := parseWrk(out)
			if err != nil {
				fr.fail(err)
				continue
			}
			if errs != "" {
				fr.note("wrk: " + errs)
			}
			fr.add(rps)
			f50.add(p50)
			f99.add(p99)
		}
	}
	d, g, n := figs[targets[0].name][0], figs[targets[1].name][0], figs[targets[2].name][0]
	for _, rr := range []struct {
		name string
		a, b *Figure
	}{{"gateway / direct", g, d}, {"nginx / direct", n, d}, {"gateway / nginx", g, n}} {
		f := b.figure(sec, "HTTP requests/s (wrk, same run, same upstream)", rr.name, "ratio", "per round: "+rr.a.Name+" / "+rr.b.Name)
		for _, v := range ratios(rr.a.Samples, rr.b.Samples) {
			f.add(v)
		}
	}
	ngx.Stop()
	b.save()
	return b.gatewayInProcess()
}

// nginxConf is nginx's configuration: prefix directory, upstream port,
// listen port.
const nginxConf = `worker_processes auto;
pid %[1]s/nginx.pid;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path %[1]s/tmp/body;
	proxy_temp_path %[1]s/tmp/proxy;
	fastcgi_temp_path %[1]s/tmp/fastcgi;
	uwsgi_temp_path %[1]s/tmp/uwsgi;
	scgi_temp_path %[1]s/tmp/scgi;
	upstream site { server 127.0.0.1:%[2]d; keepalive 64; }
	server {
		listen 127.0.0.1:%[3]d;
		location / {
			proxy_pass http://site;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host $host;
			proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
			proxy_set_header X-Forwarded-Proto $scheme;
		}
	}
}
`

var (
	wrkRPS   = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	wrkPct   = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$`)
	wrkNon2  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkSockE = regexp.MustCompile(`Socket errors: .*`)
)

func parseWrk(out string) (rps, p50, p99 float64, errs string, err error) {
	m := wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, 0, "", fmt.Errorf("wrk: no Requests/sec in %q", tail(out, 5))
	}
	rps, _ = strconv.ParseFloat(m[1], 64)
	for _, p := range wrkPct.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(p[2], 64)
		switch p[3] {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		if p[1] == "50" {
			p50 = v
		} else {
			p99 = v
		}
	}
	var e []string
	if m := wrkNon2.FindStringSubmatch(out); m != nil {
		e = append(e, m[0])
	}
	if m := wrkSockE.FindString(out); m != "" {
		e = append(e, m)
	}
	return rps, p50, p99, strings.Join(e, "; "), nil
}

// gatewayInProcess runs the gateway package's BenchmarkProxy (client,
// gateway and upstream in one process, no plugin, no namespace).
func (b *bench) gatewayInProcess() error {
	const sec = "Gateway"
	const table = "In-process proxy (gateway.BenchmarkProxy: client, gateway and upstream in one process)"
	count := b.rounds(3, 1)
	c := fmt.Sprintf("go test -run '^$' -bench Proxy -benchtime 1s -count %d ./gateway/", count)
	cmd := exec.CommandContext(b.ctx, "go", "test", "-run", "^$", "-bench", "Proxy", "-benchtime", "1s", "-count", fmt.Sprint(count), "./gateway/")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", c, err, tail(string(out), 10))
	}
	re := regexp.MustCompile(`^BenchmarkProxy/(\S+?)-\d+\s+\d+\s+([\d.]+) ns/op`)
	vals := map[string]*Figure{}
	for _, line := range strings.Split(string(out), "\n") {
		m := re.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		v, _ := strconv.ParseFloat(m[2], 64)
		f := b.figure(sec, table, m[1], "µs/request", c)
		f.add(v / 1000)
		vals[m[1]] = f
	}
	for _, p := range [][2]string{{"gateway", "direct"}, {"gateway-parallel", "direct-parallel"}} {
		if vals[p[0]] != nil && vals[p[1]] != nil {
			f := b.figure(sec, table, p[0]+" / "+p[1], "ratio (time)", "per run")
			for _, v := range ratios(vals[p[0]].Samples, vals[p[1]].Samples) {
				f.add(v)
			}
		}
	}
	return nil
}
