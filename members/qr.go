package members

import (
	"fmt"
	"strings"

	qr "github.com/piglig/go-qr"
)

// QRStyle chooses how QR draws a code in a terminal.
type QRStyle int

const (
	// QRColor forces bright white on black with ANSI colour codes and draws
	// the light modules as blocks, like `qrencode -t ansiutf8`: the code
	// has the right polarity on dark and light terminal themes alike.
	QRColor QRStyle = iota
	// QRDarkOnLight uses no escape codes and draws the dark modules as
	// blocks: for terminals with dark text on a light background, and for
	// paper.
	QRDarkOnLight
	// QRLightOnDark uses no escape codes and draws the light modules as
	// blocks: for terminals with light text on a dark background.
	QRLightOnDark
)

// QuietZone is the light margin around the code, in modules (the QR
// standard asks for 4).
const QuietZone = 4

const (
	ansiWhiteOnBlack = "\x1b[1;37;40m"
	ansiReset        = "\x1b[0m"
)

// QR encodes text (typically a rendered ClientConfig) as a QR code and
// draws it for a terminal with Unicode half blocks (two modules per
// character cell, so the code is about square), quiet zone included, one
// line per two module rows, each ending in "\n". A WireGuard configuration
// gives a code of about 77 columns.
//
// The code uses byte mode and the lowest error correction that the text
// needs (raised for free when it fits the same size): a screen gives a clean
// image, and a smaller code is easier to scan.
func QR(text string, style QRStyle) (string, error) {
	m, err := qrMatrix(text)
	if err != nil {
		return "", err
	}
	lightBlocks := style != QRDarkOnLight
	var prefix, suffix string
	switch style {
	case QRColor:
		prefix, suffix = ansiWhiteOnBlack, ansiReset
	case QRDarkOnLight, QRLightOnDark:
	default:
		return "", fmt.Errorf("drawing QR code: unknown style %d", style)
	}
	size := len(m)
	// set reports whether the cell at (x, y) of the code with its quiet
	// zone is drawn (in the foreground colour).
	set := func(x, y int) bool {
		x, y = x-QuietZone, y-QuietZone
		dark := x >= 0 && y >= 0 && x < size && y < size && m[y][x]
		return dark != lightBlocks
	}
	full := size + 2*QuietZone
	var b strings.Builder
	b.Grow((full + 1) / 2 * (full*3 + len(prefix) + len(suffix) + 1))
	for y := 0; y < full; y += 2 {
		b.WriteString(prefix)
		for x := 0; x < full; x++ {
			// The code with its quiet zone has an odd number of rows: the
			// bottom half of the last line is drawn as quiet zone too.
			top, bottom := set(x, y), set(x, y+1)
			switch {
			case top && bottom:
				b.WriteRune('█')
			case top:
				b.WriteRune('▀')
			case bottom:
				b.WriteRune('▄')
			default:
				b.WriteByte(' ')
			}
		}
		b.WriteString(suffix)
		b.WriteByte('\n')
	}
	return b.String(), nil
}

// qrMatrix returns the modules of the QR code of text, [y][x], true for
// dark, without quiet zone.
func qrMatrix(text string) ([][]bool, error) {
	if text == "" {
		return nil, fmt.Errorf("drawing QR code: empty text")
	}
	seg, err := qr.MakeBytes([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("drawing QR code: %w", err)
	}
	code, err := qr.EncodeStandardSegments([]*qr.QrSegment{seg}, qr.Low)
	if err != nil {
		return nil, fmt.Errorf("drawing QR code of %d bytes: %w", len(text), err)
	}
	n := code.Size()
	m := make([][]bool, n)
	for y := range m {
		m[y] = make([]bool, n)
		for x := range m[y] {
			m[y][x] = code.Module(x, y)
		}
	}
	return m, nil
}
