package signing

// This file is kho's only raw PDF byte work: it appends an incremental update
// that adds a signature to a PDF without touching one byte of the original
// (ISO 32000-1, 7.5.6). github.com/digitorus/pdfsign, which does this
// elsewhere, cannot be had here; pdfcpu reads the structure, and this file
// writes the update. Its tests cover PDFs with cross-reference tables and
// with cross-reference streams, already signed PDFs, and inherited or
// indirect /Annots and /AcroForm.

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/types"
)

// contentsSize is the room reserved for the CMS signature, in bytes: enough
// for a signature, a three-certificate chain and a timestamp token.
const contentsSize = 16384

// byteRangePlaceholder has room for four 10-digit offsets.
const byteRangePlaceholder = "/ByteRange [0 0000000000 0000000000 0000000000]"

// updateInput is what pdfcpu found in the original.
type updateInput struct {
	original   []byte
	size       int                // trailer /Size: the next object number
	root       types.IndirectRef  // the catalog
	catalog    types.Dict         // its dictionary
	page       types.IndirectRef  // page 1
	pageDict   types.Dict         // its dictionary
	acroForm   *types.IndirectRef // the catalog's /AcroForm when indirect
	acroDict   types.Dict         // the AcroForm dictionary (nil when none)
	fields     types.Array        // its /Fields, dereferenced
	annots     types.Array        // page 1's /Annots, dereferenced
	info       *types.IndirectRef // trailer /Info
	id         types.Array        // trailer /ID
	mediaBox   [4]float64         // page 1, for placing the stamp
	sigKind    string             // the signature dictionary's type and filters (sigCAdES when empty)
	sigDict    string             // the signature dictionary's other entries
	fieldName  string             // the new field's /T
	stamp      []string           // lines of the visible stamp; none: invisible
	dss        types.Dict         // the catalog's Document Security Store, dereferenced
	prevXref   int64              // the original's startxref
	xrefStream bool               // the original ends with a cross-reference stream
}

// prepared is the updated PDF with its signature still blank.
type preparedPDF struct {
	pdf       []byte
	byteRange [4]int64
	contents  int // offset of the first hex digit of /Contents
}

var startxrefRE = regexp.MustCompile(`startxref\s+(\d+)\s+%%EOF\s*$`)

// lastXref finds the last startxref offset and whether it points at a
// cross-reference stream.
func lastXref(pdf []byte) (int64, bool, error) {
	tail := pdf
	if len(tail) > 2048 {
		tail = tail[len(tail)-2048:]
	}
	m := startxrefRE.FindSubmatch(tail)
	if m == nil {
		return 0, false, errors.New("no startxref at the end of the file")
	}
	off, err := strconv.ParseInt(string(m[1]), 10, 64)
	if err != nil || off <= 0 || off >= int64(len(pdf)) {
		return 0, false, errors.New("startxref points outside the file")
	}
	return off, !bytes.HasPrefix(bytes.TrimLeft(pdf[off:min(off+20, int64(len(pdf)))], " \r\n\t"), []byte("xref")), nil
}

// pdfString encodes a text string as a PDF literal string in UTF-16BE with a
// byte order mark, escaped, so Vietnamese names survive.
func pdfString(s string) string {
	var b bytes.Buffer
	b.WriteString("<FEFF")
	for _, r := range s {
		if r > 0xFFFF {
			r = '?'
		}
		fmt.Fprintf(&b, "%04X", r)
	}
	b.WriteString(">")
	return b.String()
}

// update is an incremental update being written: objects appended after
// the original, then a cross-reference section of the original's kind.
type update struct {
	in      *updateInput
	b       bytes.Buffer
	offsets map[int]int64
	next    int
}

func newUpdate(in *updateInput) *update {
	u := &update{in: in, offsets: map[int]int64{}, next: in.size}
	u.b.Write(in.original)
	if !bytes.HasSuffix(in.original, []byte("\n")) {
		u.b.WriteByte('\n')
	}
	return u
}

// alloc reserves a new object number.
func (u *update) alloc() int {
	u.next++
	return u.next - 1
}

// object writes object num (generation gen) with the given body.
func (u *update) object(num, gen int, body string) {
	u.offsets[num] = int64(u.b.Len())
	fmt.Fprintf(&u.b, "%d %d obj\n%s\nendobj\n", num, gen, body)
}

// stream writes a new stream object holding data and returns its number.
func (u *update) stream(dict string, data []byte) int {
	num := u.alloc()
	u.offsets[num] = int64(u.b.Len())
	fmt.Fprintf(&u.b, "%d 0 obj\n<< %s/Length %d >>\nstream\n", num, dict, len(data))
	u.b.Write(data)
	u.b.WriteString("\nendstream\nendobj\n")
	return num
}

// rewrite writes a new version of an existing object.
func (u *update) rewrite(ref types.IndirectRef, d types.Dict) {
	u.object(ref.ObjectNumber.Value(), ref.GenerationNumber.Value(), d.PDFString())
}

// catalog writes the catalog with change applied to a copy of it.
func (u *update) catalog(change func(types.Dict)) {
	c := u.in.catalog.Clone().(types.Dict)
	change(c)
	u.rewrite(u.in.root, c)
}

// finish writes the cross-reference section and the trailer.
func (u *update) finish() []byte {
	in, b := u.in, &u.b
	trailer := fmt.Sprintf("/Root %d %d R /Prev %d", in.root.ObjectNumber.Value(), in.root.GenerationNumber.Value(), in.prevXref)
	if in.info != nil {
		trailer += fmt.Sprintf(" /Info %d %d R", in.info.ObjectNumber.Value(), in.info.GenerationNumber.Value())
	}
	if len(in.id) == 2 {
		trailer += " /ID " + in.id.PDFString()
	}
	if in.xrefStream {
		xrefNum := u.alloc()
		u.offsets[xrefNum] = int64(b.Len())
		var data, index bytes.Buffer
		for _, n := range sortedKeys(u.offsets) {
			fmt.Fprintf(&index, "%d 1 ", n)
			data.WriteByte(1)
			_ = binary.Write(&data, binary.BigEndian, uint32(u.offsets[n]))
			_ = binary.Write(&data, binary.BigEndian, uint16(0))
		}
		start := u.offsets[xrefNum]
		fmt.Fprintf(b, "%d 0 obj\n<< /Type /XRef /Size %d /W [1 4 2] /Index [%s] %s /Length %d >>\nstream\n", xrefNum, u.next, bytes.TrimSpace(index.Bytes()), trailer, data.Len())
		b.Write(data.Bytes())
		fmt.Fprintf(b, "\nendstream\nendobj\nstartxref\n%d\n%%%%EOF\n", start)
	} else {
		xref := int64(b.Len())
		b.WriteString("xref\n")
		for _, n := range sortedKeys(u.offsets) {
			fmt.Fprintf(b, "%d 1\n%010d 00000 n \n", n, u.offsets[n])
		}
		fmt.Fprintf(b, "trailer\n<< /Size %d %s >>\nstartxref\n%d\n%%%%EOF\n", u.next, trailer, xref)
	}
	return b.Bytes()
}

// Kinds of signature dictionary.
const (
	sigCAdES        = "/Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached"
	sigDocTimestamp = "/Type /DocTimeStamp /Filter /Adobe.PPKLite /SubFilter /ETSI.RFC3161"
)

// buildUpdate appends a signature (in.sigKind, CAdES by default) with its
// field on page 1, the updated page and catalog (or AcroForm), and a
// cross-reference section of the original's kind.
func buildUpdate(in updateInput) (*preparedPDF, error) {
	u := newUpdate(&in)
	b := &u.b
	kind := in.sigKind
	if kind == "" {
		kind = sigCAdES
	}
	sigNum, widgetNum := u.alloc(), u.alloc()
	apNum := 0
	if len(in.stamp) > 0 {
		apNum = u.alloc()
	}

	// The signature dictionary, with room for the byte range and the CMS.
	u.offsets[sigNum] = int64(b.Len())
	fmt.Fprintf(b, "%d 0 obj\n<< %s %s /Contents <", sigNum, kind, byteRangePlaceholder)
	contents := b.Len()
	b.Write(bytes.Repeat([]byte("0"), 2*contentsSize))
	fmt.Fprintf(b, "> %s >>\nendobj\n", in.sigDict)
	brOffset := bytes.LastIndex(b.Bytes()[:contents], []byte(byteRangePlaceholder))

	// The field and its widget (one object), on page 1.
	rect := "[0 0 0 0]"
	ap := ""
	if apNum != 0 {
		x2, y2 := in.mediaBox[2], in.mediaBox[3]
		rect = fmt.Sprintf("[%.2f %.2f %.2f %.2f]", x2-230, y2-70, x2-10, y2-10)
		ap = fmt.Sprintf(" /AP << /N %d 0 R >>", apNum)
	}
	if len(in.stamp) > 0 {
		// The stamp's text, for screen readers and search.
		ap += " /TU " + pdfString(strings.Join(in.stamp, " — "))
	}
	u.object(widgetNum, 0, fmt.Sprintf("<< /Type /Annot /Subtype /Widget /FT /Sig /T %s /V %d 0 R /P %d 0 R /Rect %s /F 132%s >>",
		pdfString(in.fieldName), sigNum, in.page.ObjectNumber.Value(), rect, ap))
	if apNum != 0 {
		content, err := stampStream(in.stamp)
		if err != nil {
			return nil, fmt.Errorf("stamp: %w", err)
		}
		u.offsets[apNum] = int64(b.Len())
		fmt.Fprintf(b, "%d 0 obj\n<< /Type /XObject /Subtype /Form /BBox [0 0 220 60] /Resources << >> /Filter /FlateDecode /Length %d >>\nstream\n", apNum, len(content))
		b.Write(content)
		b.WriteString("\nendstream\nendobj\n")
	}

	// Page 1 with the widget among its annotations.
	page := in.pageDict.Clone().(types.Dict)
	page.Update("Annots", append(append(types.Array{}, in.annots...), *types.NewIndirectRef(widgetNum, 0)))
	u.rewrite(in.page, page)

	// The AcroForm with the new field; SigFlags 3: signatures exist, append only.
	acro := types.Dict{}
	if in.acroDict != nil {
		acro = in.acroDict.Clone().(types.Dict)
	}
	acro.Update("Fields", append(append(types.Array{}, in.fields...), *types.NewIndirectRef(widgetNum, 0)))
	acro.Update("SigFlags", types.Integer(3))
	if in.acroForm != nil {
		u.rewrite(*in.acroForm, acro)
	} else {
		u.catalog(func(c types.Dict) { c.Update("AcroForm", acro) })
	}

	out := u.finish()
	rng := [4]int64{0, int64(contents - 1), int64(contents + 2*contentsSize + 1), 0}
	rng[3] = int64(len(out)) - rng[2]
	patched := fmt.Sprintf("/ByteRange [0 %010d %010d %010d]", rng[1], rng[2], rng[3])
	if len(patched) != len(byteRangePlaceholder) || brOffset < 0 {
		return nil, errors.New("byte range does not fit its placeholder")
	}
	copy(out[brOffset:], patched)
	return &preparedPDF{pdf: out, byteRange: rng, contents: contents}, nil
}

// buildDSS appends a Document Security Store (ISO 32000-2, 12.8.4.3;
// ETSI EN 319 142-1, 5.4.2) with the certificates and CRLs a validator
// needs to check the signatures without asking anyone: PAdES B-LT. What an
// earlier DSS held is kept.
func buildDSS(in updateInput, certs, crls [][]byte) []byte {
	u := newUpdate(&in)
	refs := func(key string, items [][]byte) types.Array {
		var arr types.Array
		if in.dss != nil {
			if old, ok := in.dss.Find(key); ok {
				if a, ok := old.(types.Array); ok {
					arr = append(arr, a...)
				}
			}
		}
		for _, it := range items {
			arr = append(arr, *types.NewIndirectRef(u.stream("", it), 0))
		}
		return arr
	}
	dss := types.Dict{"Type": types.Name("DSS"), "Certs": refs("Certs", certs), "CRLs": refs("CRLs", crls)}
	if in.dss != nil {
		if o, ok := in.dss.Find("OCSPs"); ok {
			dss.Insert("OCSPs", o)
		}
	}
	dssNum := u.alloc()
	u.object(dssNum, 0, dss.PDFString())
	u.catalog(func(c types.Dict) { c.Update("DSS", *types.NewIndirectRef(dssNum, 0)) })
	return u.finish()
}

func sortedKeys(m map[int]int64) []int {
	ks := make([]int, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	return ks
}

// signedData returns the bytes the signature covers.
func (p *preparedPDF) signedData() []byte {
	r := p.byteRange
	out := make([]byte, 0, r[1]+r[3])
	out = append(out, p.pdf[r[0]:r[0]+r[1]]...)
	return append(out, p.pdf[r[2]:r[2]+r[3]]...)
}

// embed writes the CMS signature into /Contents.
func (p *preparedPDF) embed(cms []byte) error {
	if len(cms) > contentsSize {
		return fmt.Errorf("signature of %d bytes exceeds the %d reserved", len(cms), contentsSize)
	}
	hex.Encode(p.pdf[p.contents:], cms)
	return nil
}
