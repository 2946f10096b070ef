package signing_test

import (
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"kho/signing"
)

// pointAt is an update's cross-reference entry pointing an object at an
// offset of the file, without writing it anew.
type pointAt struct{ off, gen int }

// appendUpdate adds an incremental update as any PDF tool could: each
// object of upd is written (string), freed ("free") or pointed at an
// existing offset (pointAt), with a cross-reference table and a trailer
// chained to the last one.
func appendUpdate(t *testing.T, pdf []byte, upd map[int]any) []byte {
	t.Helper()
	prevs := regexp.MustCompile(`startxref\s+(\d+)`).FindAllSubmatch(pdf, -1)
	prev := string(prevs[len(prevs)-1][1])
	sizes := regexp.MustCompile(`/Size (\d+)`).FindAllSubmatch(pdf, -1)
	size, _ := strconv.Atoi(string(sizes[len(sizes)-1][1]))
	var b bytes.Buffer
	b.Write(pdf)
	entries := map[int]string{}
	var nums []int
	for n := range upd {
		nums = append(nums, n)
	}
	sort.Ints(nums)
	for _, n := range nums {
		switch v := upd[n].(type) {
		case string:
			if v == "free" {
				entries[n] = fmt.Sprintf("%010d %05d f \n", 0, 1)
				break
			}
			entries[n] = fmt.Sprintf("%010d 00000 n \n", b.Len())
			fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", n, v)
		case pointAt:
			entries[n] = fmt.Sprintf("%010d %05d n \n", v.off, v.gen)
		}
		size = max(size, n+1)
	}
	x := b.Len()
	b.WriteString("xref\n")
	for _, n := range nums {
		fmt.Fprintf(&b, "%d 1\n%s", n, entries[n])
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R /Prev %s >>\nstartxref\n%d\n%%%%EOF\n", size, prev, x)
	return b.Bytes()
}

func stream(dict, content string) string {
	return fmt.Sprintf("<< %s /Length %d >>\nstream\n%s\nendstream", dict, len(content), content)
}

// Updates appended after the last signature that change what the document
// shows are refused, however they dress up: as document timestamps, as
// cross-reference or object streams, as what a DSS holds, or by pointing
// objects back at older versions. They came from trying to break the
// verifier from outside; pdfsig flags each as not totally signed.
func TestChangesDressedAsValidationDataAreRefused(t *testing.T) {
	f := newFixture(t, func(c *signing.Config) { c.Visible = true })
	original := samplePDF("fee 100 VND")
	signed, err := f.signer.Sign(f.ctx, original, signing.Options{Agency: agencyJ})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := signing.Verify(signed, f.root); err != nil || !rep.Valid {
		t.Fatalf("as signed: %+v %v", rep, err)
	}
	// Objects of the sample: 1 catalog, 2 pages, 3 page, 4 content, 5 font;
	// the signature adds 6 (signature), 7 (field) and 8 (stamp).
	forged := "BT /F1 24 Tf 72 700 Td (FORGED: fee 999999 VND) Tj ET"
	contentAt := bytes.Index(signed, []byte("4 0 obj"))
	pageAt := bytes.Index(signed, []byte("3 0 obj"))
	widget := string(regexp.MustCompile(`(?s)7 0 obj\n(.*?)\nendobj`).FindSubmatch(signed)[1])
	catalog := "<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [7 0 R] /SigFlags 3 >>"
	cases := map[string]map[int]any{
		"content typed as a document timestamp": {4: stream("/Type /DocTimeStamp /SubFilter /ETSI.RFC3161", forged)},
		"content typed as an object stream":     {4: stream("/Type /ObjStm /N 0 /First 0", forged)},
		"content typed as a cross-reference":    {4: stream("/Type /XRef /Size 1 /W [1 1 1]", forged)},
		"content held by the DSS":               {4: stream("", forged), 1: catalog + " /DSS 20 0 R >>", 20: "<< /Type /DSS /Certs [4 0 R] >>"},
		"content held by an unlisted DSS":       {4: stream("", forged), 20: "<< /Type /DSS /Foo 4 0 R >>"},
		"catalog typed as a document timestamp": {1: "<< /Type /DocTimeStamp /SubFilter /ETSI.RFC3161 /Pages 2 0 R /AcroForm << /Fields [7 0 R] /SigFlags 3 >> /OpenAction << /S /JavaScript /JS (app.alert\\(1\\)) >> >>"},
		"catalog with an open action":           {1: catalog + " /OpenAction << /S /JavaScript /JS (app.alert\\(1\\)) >> >>"},
		"page injected through the DSS": {1: catalog + " /DSS 20 0 R >>", 20: "<< /Type /DSS /Certs [2 0 R 22 0 R 23 0 R] >>",
			2:  "<< /Type /Pages /Kids [22 0 R 3 0 R] /Count 2 >>",
			22: "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 5 0 R >> >> /Contents 23 0 R >>",
			23: stream("", "BT /F1 24 Tf 72 700 Td (INJECTED PAGE) Tj ET")},
		"page pointed back at its unsigned version": {3: pointAt{pageAt, 0}},
		"content freed":                         {4: "free"},
		"content pointed at another object":     {4: pointAt{pageAt, 0}},
		"content pointed at itself, rewritten":  {4: pointAt{contentAt, 1}},
		"stamp replaced under a timestamp type": {7: strings.Replace(widget, "/AP << /N 8 0 R >>", "/AP << /N 21 0 R >>", 1) + "", 21: stream("/Type /DocTimeStamp /SubFilter /ETSI.RFC3161 /Subtype /Form /BBox [0 0 220 60]", "BT /F1 12 Tf 10 25 Td (Signed by: SOMEONE ELSE) Tj ET")},
		"timestamp field that is visible": {7: widget, 30: "<< /Type /Annot /Subtype /Widget /FT /Sig /T (ts) /V 31 0 R /P 3 0 R /Rect [0 0 300 300] /AP << /N 32 0 R >> >>",
			31: "<< /Type /DocTimeStamp /SubFilter /ETSI.RFC3161 /ByteRange [0 1 2 3] /Contents <00> >>",
			32: stream("/Type /XObject /Subtype /Form /BBox [0 0 300 300]", "BT /F1 24 Tf 10 150 Td (VOID) Tj ET"),
			1:  "<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [7 0 R 30 0 R] /SigFlags 3 >> >>"},
	}
	// Annotations dressed as timestamp fields: not widgets, or with
	// actions, or not in the form.
	pageWith := func(annots string) string {
		return "<< /Type /Page /Parent 2 0 R /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> /Annots [7 0 R " + annots + "] >>"
	}
	ts := "<< /Type /DocTimeStamp /SubFilter /ETSI.RFC3161 >>"
	cases["line and polygon annotations dressed as timestamp fields"] = map[int]any{3: pageWith("40 0 R 42 0 R"), 41: ts,
		40: "<< /Type /Annot /Subtype /Polygon /FT /Sig /V 41 0 R /Rect [0 0 0 0] /Vertices [60 760 400 760 400 790 60 790] /IC [1 1 1] /C [1 1 1] >>",
		42: "<< /Type /Annot /Subtype /Line /FT /Sig /V 41 0 R /Rect [0 0 0 0] /L [72 700 400 700] /Cap true /Contents (FORGED: fee 999999 VND) >>"}
	cases["timestamp field with an action held by a DSS-labelled object"] = map[int]any{3: pageWith("40 0 R"), 41: ts,
		40: "<< /Type /Annot /Subtype /Widget /FT /Sig /V 41 0 R /Rect [0 0 0 0] /AA << /PO 43 0 R >> >>",
		43: "<< /Type /DSS /S /JavaScript /JS (app.alert\\(1\\)) >>",
		1:  "<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [7 0 R 40 0 R] /SigFlags 3 >> >>"}
	cases["timestamp field listed on the page but not in the form"] = map[int]any{3: pageWith("40 0 R"), 41: ts,
		40: "<< /Type /Annot /Subtype /Widget /FT /Sig /V 41 0 R /Rect [0 0 0 0] >>"}
	for name, upd := range cases {
		t.Run(name, func(t *testing.T) {
			bad := appendUpdate(t, signed, upd)
			rep, err := signing.Verify(bad, f.root)
			if err == nil && rep.Valid {
				t.Fatalf("reported valid: %+v", rep)
			}
			r := pdfsig(t, f.nssdir, bad)
			if strings.Contains(r.Raw, "Total document signed") && !strings.Contains(r.Raw, "Not total document signed") {
				t.Fatalf("pdfsig says the whole document is signed:\n%s", r.Raw)
			}
		})
	}
	// A DSS of real certificates added by anyone stays valid.
	ok := appendUpdate(t, signed, map[int]any{1: catalog + " /DSS 20 0 R >>", 20: "<< /Type /DSS /Certs [21 0 R] >>", 21: stream("", string(f.root.Raw))})
	if rep, err := signing.Verify(ok, f.root); err != nil || !rep.Valid {
		t.Fatalf("a DSS of certificates: %+v %v", rep, err)
	}
}

// A reader that rebuilds the cross-reference table from the objects it
// finds must see what kho checked: an object written after the signature
// where no table entry points (here behind a malformed section that a
// lenient parser reads anyway) is refused.
func TestObjectsNoTableReachesAreRefused(t *testing.T) {
	f := newFixture(t)
	signed, err := f.signer.Sign(f.ctx, samplePDF("fee 100 VND"), signing.Options{Agency: agencyJ})
	if err != nil {
		t.Fatal(err)
	}
	prevs := regexp.MustCompile(`startxref\s+(\d+)`).FindAllSubmatch(signed, -1)
	forged := "BT /F1 24 Tf 72 700 Td (FORGED: fee 999999 VND) Tj ET"
	var b bytes.Buffer
	b.Write(signed)
	fmt.Fprintf(&b, "4 0 obj\n%s\nendobj\n", stream("", forged))
	x := b.Len()
	fmt.Fprintf(&b, "xref\n5 1\n%010d 00000 n \n%010d 00000 n \ntrailer\n<< /Size 9 /Root 1 0 R /Prev %s >>\nstartxref\n%d\n%%%%EOF\n",
		bytes.Index(signed, []byte("5 0 obj")), bytes.Index(signed, []byte("6 0 obj")), prevs[len(prevs)-1][1], x)
	if rep, err := signing.Verify(b.Bytes(), f.root); err == nil && rep.Valid {
		t.Fatalf("reported valid: %+v", rep)
	}
}

// A form whose fields list each other many times over is a small file and
// a huge tree: each field is visited once.
func TestFieldBombIsVerifiedQuickly(t *testing.T) {
	f := newFixture(t)
	signed, err := f.signer.Sign(f.ctx, samplePDF("bomb"), signing.Options{Agency: agencyJ})
	if err != nil {
		t.Fatal(err)
	}
	upd := map[int]any{1: "<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [40 0 R] /SigFlags 3 >> >>"}
	for i := 40; i < 50; i++ {
		upd[i] = "<< /Kids [" + strings.Repeat(fmt.Sprintf("%d 0 R ", i+1), 60) + "] /FT /Sig /V 6 0 R >>"
	}
	bomb := appendUpdate(t, signed, upd)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = signing.Verify(bomb, f.root)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("verifying a field bomb did not finish")
	}
}
