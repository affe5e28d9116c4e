package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// palette of the series.
var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}

// svgCurve draws a curve as a line chart: one polyline per series through
// the medians, a vertical bar from min to max at each point, axes with
// ticks, and a legend. No external tool: plain SVG text.
func svgCurve(c *Curve) string {
	const W, H = 640.0, 400.0
	const left, right, top, bottom = 70.0, 20.0, 40.0, 60.0
	pw, ph := W-left-right, H-top-bottom
	xmin, xmax := math.Inf(1), math.Inf(-1)
	ymax := 0.0
	for _, s := range c.Series {
		for _, p := range s.Points {
			xmin, xmax = math.Min(xmin, p.X), math.Max(xmax, p.X)
			ymax = math.Max(ymax, math.Max(p.Max, p.Median))
		}
	}
	if math.IsInf(xmin, 1) {
		xmin, xmax = 0, 1
	}
	if xmin == xmax {
		xmin, xmax = xmin-1, xmax+1
	}
	if ymax <= 0 {
		ymax = 1
	}
	yticks := niceTicks(0, ymax, 5)
	ytop := yticks[len(yticks)-1]
	logx := c.LogX && xmin > 0
	fx := func(x float64) float64 {
		if logx {
			return left + pw*(math.Log(x)-math.Log(xmin))/(math.Log(xmax)-math.Log(xmin))
		}
		return left + pw*(x-xmin)/(xmax-xmin)
	}
	fy := func(y float64) float64 { return top + ph*(1-y/ytop) }

	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&sb, `<text x="%.0f" y="22" text-anchor="middle" font-size="14" font-weight="bold">%s</text>`+"\n", W/2, html.EscapeString(c.Title))
	// Grid and y ticks.
	for _, t := range yticks {
		y := fy(t)
		fmt.Fprintf(&sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, y, left+pw, y)
		fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, fmtTick(t))
	}
	// x ticks at the data's x values.
	seen := map[float64]bool{}
	for _, s := range c.Series {
		for _, p := range s.Points {
			if seen[p.X] {
				continue
			}
			seen[p.X] = true
			x := fx(p.X)
			fmt.Fprintf(&sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", x, top+ph, x, top+ph+5)
			fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, top+ph+18, fmtTick(p.X))
		}
	}
	fmt.Fprintf(&sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", left, top+ph, left+pw, top+ph)
	fmt.Fprintf(&sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", left, top, left, top+ph)
	fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", left+pw/2, H-18, html.EscapeString(c.XLabel))
	fmt.Fprintf(&sb, `<text x="16" y="%.1f" text-anchor="middle" transform="rotate(-90 16 %.1f)">%s</text>`+"\n", top+ph/2, top+ph/2, html.EscapeString(c.YLabel))
	// Series.
	for i, s := range c.Series {
		col := palette[i%len(palette)]
		var pts []string
		for _, p := range s.Points {
			x := fx(p.X)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, fy(p.Median)))
			if p.Max > p.Min {
				fmt.Fprintf(&sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5"/>`+"\n", x, fy(p.Min), x, fy(p.Max), col)
				for _, y := range []float64{p.Min, p.Max} {
					fmt.Fprintf(&sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5"/>`+"\n", x-4, fy(y), x+4, fy(y), col)
				}
			}
			fmt.Fprintf(&sb, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s: x=%s median=%s (min %s, max %s)</title></circle>`+"\n",
				x, fy(p.Median), col, html.EscapeString(s.Name), fmtTick(p.X), fmtNum(p.Median), fmtNum(p.Min), fmtNum(p.Max))
		}
		if len(pts) > 1 {
			fmt.Fprintf(&sb, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), col)
		}
		ly := top + 8 + float64(i)*16
		fmt.Fprintf(&sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", left+12, ly, left+32, ly, col)
		fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f">%s</text>`+"\n", left+38, ly+4, html.EscapeString(s.Name))
	}
	fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" text-anchor="end" font-size="10" fill="#666">points: median; bars: min–max of the runs</text>`+"\n", W-right, H-4)
	sb.WriteString("</svg>\n")
	return sb.String()
}

// niceTicks returns about n round ticks from lo to at least hi.
func niceTicks(lo, hi float64, n int) []float64 {
	span := hi - lo
	step := math.Pow(10, math.Floor(math.Log10(span/float64(n))))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if span/(step*m) <= float64(n) {
			step *= m
			break
		}
	}
	var t []float64
	for v := lo; v < hi+step*0.999; v += step {
		t = append(t, v)
	}
	if len(t) < 2 {
		t = append(t, lo+step)
	}
	return t
}

func fmtTick(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e9 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmtNum(v)
}
