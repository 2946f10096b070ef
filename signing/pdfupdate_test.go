package signing

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/types"
)

func TestLastXref(t *testing.T) {
	tests := []struct {
		name   string
		pdf    string
		off    int64
		stream bool
		ok     bool
	}{
		{"ok/table", "%PDF-1.4\n" + strings.Repeat("x", 20) + "xref\n0 1\ntrailer\n<<>>\nstartxref\n29\n%%EOF\n", 29, false, true},
		{"ok/stream", "%PDF-1.5\n" + strings.Repeat("x", 20) + "7 0 obj\n<< /Type /XRef >>\nstartxref\n29\n%%EOF", 29, true, true},
		{"ok/trailing newlines", "%PDF-1.4\n" + strings.Repeat("x", 20) + "xref\nstartxref\n29\n%%EOF\r\n\r\n", 29, false, true},
		{"fail/no startxref", "%PDF-1.4\nxref\n%%EOF\n", 0, false, false},
		{"fail/offset past the end", "%PDF-1.4\nstartxref\n99999\n%%EOF\n", 0, false, false},
		{"fail/offset zero", "%PDF-1.4\nstartxref\n0\n%%EOF\n", 0, false, false},
		{"fail/junk after eof", "%PDF-1.4\nxref\nstartxref\n9\n%%EOF\njunk", 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			off, stream, err := lastXref([]byte(tt.pdf))
			if (err == nil) != tt.ok || (tt.ok && (off != tt.off || stream != tt.stream)) {
				t.Fatalf("lastXref = %d, %v, %v", off, stream, err)
			}
		})
	}
}

func TestPDFStrings(t *testing.T) {
	if got := pdfString("Việt"); got != "<FEFF005600691EC70074>" {
		t.Errorf("pdfString = %s", got)
	}
}

// The byte range covers every byte but the hex signature and its brackets,
// the original is kept as it is, and a too large signature is refused.
func TestBuildUpdateByteRange(t *testing.T) {
	original := []byte("%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\nxref\n0 1\ntrailer\n<< /Size 3 /Root 1 0 R >>\nstartxref\n58\n%%EOF\n")
	for _, stream := range []bool{false, true} {
		in := updateInput{
			original: original, size: 3, root: *types.NewIndirectRef(1, 0), catalog: types.Dict{"Type": types.Name("Catalog")},
			page: *types.NewIndirectRef(2, 0), pageDict: types.Dict{"Type": types.Name("Page")}, prevXref: 58, xrefStream: stream,
			sigDict: "/M (D:20260101000000+00'00')", fieldName: "f", id: types.Array{types.HexLiteral("00"), types.HexLiteral("00")},
		}
		p, err := buildUpdate(in)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(p.pdf, original) {
			t.Fatal("the original was changed")
		}
		r := p.byteRange
		if r[0] != 0 || p.pdf[r[1]] != '<' || p.pdf[r[2]-1] != '>' || r[2]+r[3] != int64(len(p.pdf)) || r[2]-r[1] != 2*contentsSize+2 {
			t.Fatalf("byte range %v does not frame /Contents", r)
		}
		if !bytes.Contains(p.pdf, []byte("/ByteRange [0 "+pad(r[1])+" "+pad(r[2])+" "+pad(r[3])+"]")) {
			t.Fatal("byte range not written into the file")
		}
		if got := len(p.signedData()); int64(got) != r[1]+r[3] {
			t.Fatalf("signed data %d bytes", got)
		}
		if stream != bytes.Contains(p.pdf[len(original):], []byte("/Type /XRef")) {
			t.Fatalf("cross-reference kind (stream=%v) not kept", stream)
		}
		if !bytes.Contains(p.pdf, []byte("/Prev 58")) || !bytes.HasSuffix(p.pdf, []byte("%%EOF\n")) {
			t.Fatal("trailer does not chain to the original")
		}
		if err := p.embed(bytes.Repeat([]byte{1}, contentsSize+1)); err == nil {
			t.Fatal("an oversized signature was embedded")
		}
		if err := p.embed([]byte{0xab, 0xcd}); err != nil || !bytes.Contains(p.pdf, []byte("<abcd000")) {
			t.Fatalf("embed: %v", err)
		}
	}
}

func pad(n int64) string { return fmt.Sprintf("%010d", n) }

func TestCommonNamesFitX520(t *testing.T) {
	long := "Ủy ban nhân dân phường Phúc Xá, quận Ba Đình, thành phố Hà Nội, Việt Nam"
	for _, tt := range []struct{ head, suffix, want string }{
		{"Ba Dinh Justice Office", " (000.06.16.G09)", "Ba Dinh Justice Office (000.06.16.G09)"},
		{long, " (000.06.16.G09)", "Ủy ban nhân dân phường Phúc Xá, quận Ba Đình, t… (000.06.16.G09)"},
	} {
		got := fitCommonName(tt.head, tt.suffix)
		if got != tt.want || len([]rune(got)) > 64 {
			t.Errorf("fitCommonName(%q) = %q (%d), want %q", tt.head, got, len([]rune(got)), tt.want)
		}
	}
}

func TestStampLinesFitTheirBox(t *testing.T) {
	long := "Ủy ban nhân dân phường Phúc Xá, quận Ba Đình, thành phố Hà Nội, Việt Nam"
	got := clip(long)
	w, _ := drawText(&bytes.Buffer{}, got, 0, 0)
	if !strings.HasSuffix(got, "…") || w > 208 || len([]rune(got)) < 30 {
		t.Fatalf("clip = %q (%.1f pt)", got, w)
	}
	if got := clip("Ký bởi / Signed by:"); got != "Ký bởi / Signed by:" {
		t.Fatalf("a short line was clipped: %q", got)
	}
}
