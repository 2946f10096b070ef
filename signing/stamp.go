package signing

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"sync"

	"github.com/go-fonts/liberation/liberationsansregular"
	"golang.org/x/image/font"
	"golang.org/x/image/font/sfnt"
	"golang.org/x/image/math/fixed"
	"golang.org/x/text/unicode/norm"
)

// The visible stamp draws its text as the outlines of Liberation Sans glyphs,
// which cover Vietnamese, rather than with one of PDF's standard fonts,
// which do not: "Ký bởi", not "Ky boi". Outlines need no embedded font
// program in the signed file; the field's /TU carries the same text for
// screen readers and search.

var stampFont struct {
	once sync.Once
	f    *sfnt.Font
	err  error
}

func loadStampFont() (*sfnt.Font, error) {
	stampFont.once.Do(func() { stampFont.f, stampFont.err = sfnt.Parse(liberationsansregular.TTF) })
	return stampFont.f, stampFont.err
}

// stampSize is the stamp text's size in points.
const stampSize = 7.0

// drawText appends to w the path operators that fill line's glyphs with the
// baseline starting at (x, y), in points, and returns the advance.
func drawText(w *bytes.Buffer, line string, x, y float64) (float64, error) {
	f, err := loadStampFont()
	if err != nil {
		return 0, err
	}
	var b sfnt.Buffer
	upem := float64(f.UnitsPerEm())
	ppem := fixed.I(int(upem)) // outlines in font units
	scale := stampSize / upem
	pen := x
	for _, r := range norm.NFC.String(line) {
		g, err := f.GlyphIndex(&b, r)
		if err != nil || g == 0 {
			g, _ = f.GlyphIndex(&b, '?')
		}
		segs, err := f.LoadGlyph(&b, g, ppem, nil)
		if err != nil {
			return 0, err
		}
		adv, err := f.GlyphAdvance(&b, g, ppem, font.HintingNone)
		if err != nil {
			return 0, err
		}
		if len(segs) > 0 {
			// Font units, y up: sfnt's y grows downwards.
			fmt.Fprintf(w, "q %.5f 0 0 %.5f %.2f %.2f cm ", scale, scale, pen, y)
			var cur [2]float64
			pt := func(p fixed.Point26_6) [2]float64 { return [2]float64{float64(p.X) / 64, -float64(p.Y) / 64} }
			for _, s := range segs {
				switch s.Op {
				case sfnt.SegmentOpMoveTo:
					cur = pt(s.Args[0])
					fmt.Fprintf(w, "%.0f %.0f m ", cur[0], cur[1])
				case sfnt.SegmentOpLineTo:
					cur = pt(s.Args[0])
					fmt.Fprintf(w, "%.0f %.0f l ", cur[0], cur[1])
				case sfnt.SegmentOpQuadTo:
					// A quadratic Bézier as the cubic PDF draws.
					c, e := pt(s.Args[0]), pt(s.Args[1])
					fmt.Fprintf(w, "%.1f %.1f %.1f %.1f %.0f %.0f c ", cur[0]+2*(c[0]-cur[0])/3, cur[1]+2*(c[1]-cur[1])/3,
						e[0]+2*(c[0]-e[0])/3, e[1]+2*(c[1]-e[1])/3, e[0], e[1])
					cur = e
				case sfnt.SegmentOpCubeTo:
					c1, c2, e := pt(s.Args[0]), pt(s.Args[1]), pt(s.Args[2])
					fmt.Fprintf(w, "%.0f %.0f %.0f %.0f %.0f %.0f c ", c1[0], c1[1], c2[0], c2[1], e[0], e[1])
					cur = e
				}
			}
			w.WriteString("f Q\n")
		}
		pen += float64(adv) / 64 * scale
	}
	return pen - x, nil
}

// stampStream is the stamp's appearance: a frame and the lines, as a
// Flate-compressed content stream.
func stampStream(lines []string) ([]byte, error) {
	var c bytes.Buffer
	c.WriteString("q 0.1 0.2 0.6 RG 1 w 0.5 0.5 219 59 re S Q\nq 0.1 0.2 0.6 rg\n")
	for i, line := range lines[:min(len(lines), 5)] {
		if _, err := drawText(&c, line, 6, float64(50-i*11)); err != nil {
			return nil, err
		}
	}
	c.WriteString("Q\n")
	var z bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&z, zlib.BestCompression)
	if _, err := zw.Write(c.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return z.Bytes(), nil
}
