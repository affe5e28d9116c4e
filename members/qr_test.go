package members

import (
	"image"
	"image/color"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
)

// screen draws terminal text the way a terminal would: each character cell
// is two modules high; the drawn halves of '█', '▀' and '▄' take fg, the
// rest bg. Escape sequences are dropped (the caller passes the colours they
// set). It returns the image, scale pixels per module.
func screen(t *testing.T, text string, fg, bg color.Gray, scale int) *image.Gray {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	width := 0
	for i, l := range lines {
		l = strings.ReplaceAll(strings.ReplaceAll(l, ansiWhiteOnBlack, ""), ansiReset, "")
		lines[i] = l
		if i == 0 {
			width = utf8.RuneCountInString(l)
		} else if n := utf8.RuneCountInString(l); n != width {
			t.Fatalf("line %d has %d cells, line 1 has %d", i+1, n, width)
		}
	}
	// A margin of terminal background around the drawing.
	const margin = 8
	img := image.NewGray(image.Rect(0, 0, width*scale+2*margin*scale, len(lines)*2*scale+2*margin*scale))
	for i := range img.Pix {
		img.Pix[i] = 128 // grey terminal border: neither colour
	}
	fill := func(mx, my int, c color.Gray) {
		for y := 0; y < scale; y++ {
			for x := 0; x < scale; x++ {
				img.SetGray(margin*scale+mx*scale+x, margin*scale+my*scale+y, c)
			}
		}
	}
	for row, l := range lines {
		x := 0
		for _, r := range l {
			top, bottom := bg, bg
			switch r {
			case '█':
				top, bottom = fg, fg
			case '▀':
				top = fg
			case '▄':
				bottom = fg
			case ' ':
			default:
				t.Fatalf("unexpected character %q in line %d", r, row+1)
			}
			fill(x, 2*row, top)
			fill(x, 2*row+1, bottom)
			x++
		}
	}
	return img
}

func decodeQR(t *testing.T, img image.Image) (string, error) {
	t.Helper()
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		return "", err
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{
		gozxing.DecodeHintType_CHARACTER_SET: "UTF-8",
	})
	if err != nil {
		return "", err
	}
	return res.GetText(), nil
}

// TestQRDecodes draws each golden configuration in each style, looks at it
// as a terminal of each theme would show it, and decodes it with an
// independent decoder (gozxing, a port of ZXing, which the WireGuard
// Android app also uses).
func TestQRDecodes(t *testing.T) {
	black, white := color.Gray{Y: 0}, color.Gray{Y: 255}
	darkTheme := [2]color.Gray{{Y: 230}, {Y: 30}} // fg, bg
	lightTheme := [2]color.Gray{{Y: 20}, {Y: 250}}
	for _, tc := range goldenCases(t) {
		text, err := Render(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []struct {
			name   string
			style  QRStyle
			fg, bg color.Gray
		}{
			// QRColor sets its own colours: bold white on black.
			{"color", QRColor, white, black},
			{"dark-on-light/light theme", QRDarkOnLight, lightTheme[0], lightTheme[1]},
			{"light-on-dark/dark theme", QRLightOnDark, darkTheme[0], darkTheme[1]},
		} {
			t.Run(tc.name+"/"+v.name, func(t *testing.T) {
				out, err := QR(text, v.style)
				if err != nil {
					t.Fatal(err)
				}
				got, err := decodeQR(t, screen(t, out, v.fg, v.bg, 3))
				if err != nil {
					t.Fatalf("QR code does not decode: %v\n%s", err, out)
				}
				if got != text {
					t.Errorf("decoded text differs:\n got %q\nwant %q", got, text)
				}
			})
		}
	}
}

// TestQRPolarity is the negative control of TestQRDecodes: the dark-on-light
// drawing seen on a dark theme is a negative, which the decoder (like many
// phone scanners) does not read. So the decoder does tell the polarities
// apart, and QRColor, which forces its colours, is the safe default.
func TestQRPolarity(t *testing.T) {
	text, _ := Render(goldenCases(t)[0].cfg)
	out, err := QR(text, QRDarkOnLight)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeQR(t, screen(t, out, color.Gray{Y: 230}, color.Gray{Y: 30}, 3)); err == nil {
		t.Error("the decoder read a negative: TestQRDecodes cannot check polarity")
	}
}

func TestQRStructure(t *testing.T) {
	text, _ := Render(goldenCases(t)[0].cfg)
	m, err := qrMatrix(text)
	if err != nil {
		t.Fatal(err)
	}
	size := len(m)
	if size < 21 || (size-17)%4 != 0 {
		t.Fatalf("matrix size %d is not a QR size", size)
	}
	// Finder patterns in three corners: a dark 7x7 ring.
	for _, c := range [][2]int{{0, 0}, {size - 7, 0}, {0, size - 7}} {
		for i := 0; i < 7; i++ {
			if !m[c[1]][c[0]+i] || !m[c[1]+6][c[0]+i] || !m[c[1]+i][c[0]] || !m[c[1]+i][c[0]+6] {
				t.Fatalf("no finder pattern at %v", c)
			}
		}
	}
	full := size + 2*QuietZone
	for _, style := range []QRStyle{QRColor, QRDarkOnLight, QRLightOnDark} {
		out, err := QR(text, style)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != (full+1)/2 {
			t.Errorf("style %d: %d lines, want %d", style, len(lines), (full+1)/2)
		}
		quiet := map[QRStyle]string{QRColor: "█", QRLightOnDark: "█", QRDarkOnLight: " "}[style]
		for i, l := range lines {
			if style == QRColor {
				if !strings.HasPrefix(l, ansiWhiteOnBlack) || !strings.HasSuffix(l, ansiReset) {
					t.Fatalf("line %d does not set and reset its colours: %q", i+1, l)
				}
				l = strings.TrimSuffix(strings.TrimPrefix(l, ansiWhiteOnBlack), ansiReset)
			}
			if n := utf8.RuneCountInString(l); n != full {
				t.Fatalf("style %d line %d: %d cells, want %d", style, i+1, n, full)
			}
			if i < QuietZone/2 && l != strings.Repeat(quiet, full) {
				t.Errorf("style %d line %d is not quiet zone: %q", style, i+1, l)
			}
			r := []rune(l)
			for x := 0; x < QuietZone; x++ {
				if string(r[x]) != quiet || string(r[full-1-x]) != quiet {
					t.Fatalf("style %d line %d: no quiet zone at the sides", style, i+1)
				}
			}
		}
		t.Logf("style %d: %d columns x %d lines for %d bytes", style, full, len(lines), len(text))
	}
	if full > 80 {
		t.Errorf("a member configuration needs %d columns, more than a classic 80-column terminal", full)
	}
}

func TestQRErrors(t *testing.T) {
	if _, err := QR("", QRColor); err == nil {
		t.Error("empty text accepted")
	}
	_, err := QR(strings.Repeat("x", 3000), QRColor)
	oneLine(t, err)
	if !strings.Contains(err.Error(), "3000 bytes") {
		t.Errorf("too long: %v", err)
	}
	if _, err := QR("x", QRStyle(42)); err == nil {
		t.Error("unknown style accepted")
	}
}
