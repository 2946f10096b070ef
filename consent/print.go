package consent

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"strings"
	"time"

	"github.com/go-fonts/liberation/liberationsansbold"
	"github.com/go-fonts/liberation/liberationsansregular"
	"github.com/google/uuid"
	"github.com/signintech/gopdf"
	"rsc.io/qr"

	"kho"
)

// QRType is the JWS type of the receipt summary a printed receipt carries
// in its QR code: what a phone can verify offline against
// /.well-known/jwks.json, bound to the full receipt by its hash.
const QRType = "kho-consent-receipt-qr+jws"

// QRSummary is the QR code's claims: the consent as the receipt states it,
// short enough for a QR code a phone reads from paper, and the SHA-256 of
// the full receipt's compact JWS.
type QRSummary struct {
	Issuer        string            `json:"iss"`
	IssuedAt      int64             `json:"iat"`
	ID            string            `json:"jti"`
	Subject       kho.SubjectHandle `json:"sub"`
	Version       string            `json:"receipt_version"`
	ConsentID     string            `json:"consent_id"`
	Status        string            `json:"status"`
	Grantee       kho.AgencyCode    `json:"grantee"`
	Procedure     string            `json:"procedure"`
	DocumentTypes []string          `json:"document_types"`
	ValidFrom     time.Time         `json:"valid_from"`
	ValidUntil    time.Time         `json:"valid_until"`
	MaxUses       *int              `json:"max_uses,omitempty"`
	DataLifeDays  int               `json:"data_life_days"`
	ReceiptID     string            `json:"receipt_jti"`
	ReceiptHash   string            `json:"receipt_sha256"` // base64url, no padding
}

// QRVersion names the summary's format.
const QRVersion = "kho-consent-receipt-qr/1"

// Printable is what a printed receipt shows: the latest receipt, its
// compact JWS, and the signed summary for the QR code.
type Printable struct {
	Receipt *Receipt
	JWS     string
	QR      string
}

// PrintableReceipt reads the latest receipt of a consent (recorded as a
// reading, like Receipt) and signs its QR summary.
func (s *Service) PrintableReceipt(ctx context.Context, p kho.Principal, id string) (*Printable, error) {
	jws, err := s.Receipt(ctx, p, id)
	if err != nil {
		return nil, err
	}
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return nil, kho.Errorf(kho.EINTEGRITY, "consent: the stored receipt is not a compact JWS")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, kho.WrapError(kho.EINTEGRITY, "consent: the stored receipt", err)
	}
	r := &Receipt{}
	if err := json.Unmarshal(payload, r); err != nil || r.Consent == nil {
		return nil, kho.Errorf(kho.EINTEGRITY, "consent: the stored receipt does not parse")
	}
	sum := sha256.Sum256([]byte(jws))
	q := QRSummary{Issuer: r.Issuer, IssuedAt: s.now().Unix(), ID: uuid.NewString(), Subject: r.Subject, Version: QRVersion,
		ConsentID: r.Consent.ID, Status: r.Consent.Status, Grantee: r.Consent.Grantee, Procedure: r.Consent.Procedure,
		DocumentTypes: r.Consent.DocumentTypes, ValidFrom: r.Consent.ValidFrom, ValidUntil: r.Consent.ValidUntil,
		MaxUses: r.Consent.MaxUses, DataLifeDays: r.Consent.DataLifeDays, ReceiptID: r.ID, ReceiptHash: base64.RawURLEncoding.EncodeToString(sum[:])}
	qp, err := json.Marshal(q)
	if err != nil {
		return nil, kho.WrapError(kho.EINTERNAL, "consent: QR summary", err)
	}
	summary, err := s.signer.SignCompact(ctx, ReceiptKey, qp, QRType)
	if err != nil {
		return nil, err
	}
	return &Printable{Receipt: r, JWS: jws, QR: summary}, nil
}

// vietnam is the time zone receipts are printed in.
var vietnam = time.FixedZone("ICT", 7*3600)

// words in Vietnamese and English for what a receipt's values say.
var statusWords = map[string][2]string{
	"active": {"đang hiệu lực", "active"}, "paused": {"tạm dừng", "paused"}, "revoked": {"đã rút lại", "withdrawn"},
	"expired": {"hết hạn", "expired"}, "exhausted": {"đã dùng hết lượt", "used up"},
}

func bilingual(m map[string][2]string, k string) string {
	if w, ok := m[k]; ok {
		return w[0] + " / " + w[1]
	}
	return k
}

func when(t time.Time) string { return t.In(vietnam).Format("02/01/2006 15:04 (GMT+7)") }

// RenderPDF lays out a printable receipt on A4, Vietnamese first and
// English second, with the QR code; the caller signs it.
func RenderPDF(pr *Printable) ([]byte, error) {
	r, c := pr.Receipt, pr.Receipt.Consent
	code, err := qr.Encode(pr.QR, qr.M)
	if err != nil {
		return nil, kho.WrapError(kho.EINTERNAL, "consent: QR code", err)
	}
	pdf := &gopdf.GoPdf{}
	pdf.Start(gopdf.Config{PageSize: *gopdf.PageSizeA4, Unit: gopdf.UnitPT})
	pdf.SetInfo(gopdf.PdfInfo{Title: "Biên nhận đồng ý / Consent receipt " + c.ID, Author: r.Controller.Name, Creator: "kho", CreationDate: time.Unix(r.IssuedAt, 0)})
	pdf.SetCompressLevel(9)
	if err := pdf.AddTTFFontData("regular", liberationsansregular.TTF); err != nil {
		return nil, kho.WrapError(kho.EINTERNAL, "consent: font", err)
	}
	if err := pdf.AddTTFFontData("bold", liberationsansbold.TTF); err != nil {
		return nil, kho.WrapError(kho.EINTERNAL, "consent: font", err)
	}
	const left, fullWidth, bottom = 50.0, 495.0, 790.0
	width := fullWidth
	pdf.AddPage()
	var werr error
	write := func(font string, size float64, text string) {
		if werr != nil {
			return
		}
		if werr = pdf.SetFont(font, "", size); werr != nil {
			return
		}
		lines, err := pdf.SplitTextWithWordWrap(text, width)
		if err != nil {
			werr = err
			return
		}
		for _, l := range lines {
			if pdf.GetY() > bottom {
				pdf.AddPage()
				pdf.SetY(50)
			}
			pdf.SetX(left)
			if werr = pdf.Cell(nil, l); werr != nil {
				return
			}
			pdf.Br(size * 1.35)
		}
	}
	field := func(vi, en, value string) {
		write("bold", 9, vi+" / "+en)
		write("regular", 10.5, value)
		pdf.Br(3)
	}
	pdf.SetXY(left, 50)
	write("bold", 15, "BIÊN NHẬN ĐỒNG Ý XỬ LÝ DỮ LIỆU CÁ NHÂN")
	write("regular", 11, "Consent receipt for the processing of personal data")
	pdf.Br(6)
	pdf.SetLineWidth(0.5)
	pdf.Line(left, pdf.GetY(), left+fullWidth, pdf.GetY())
	pdf.Br(10)

	// The QR code, top right, the first fields beside it.
	qrTop := pdf.GetY()
	side := 170.0
	if err := pdf.ImageFrom(qrImage(code), left+fullWidth-side, qrTop, &gopdf.Rect{W: side, H: side}); err != nil {
		return nil, kho.WrapError(kho.EINTERNAL, "consent: QR image", err)
	}
	width = fullWidth - side - 15
	field("Số biên nhận", "Receipt number", r.ID)
	field("Thời điểm cấp", "Issued", when(time.Unix(r.IssuedAt, 0)))
	field("Bên kiểm soát dữ liệu", "Controller", r.Controller.Name+" — "+r.Controller.Contact)
	field("Kho dữ liệu của", "Data subject's store", string(r.Subject))
	var recipients []string
	for _, rc := range r.Recipients {
		recipients = append(recipients, fmt.Sprintf("%s / %s (%s)", rc.NameVI, rc.NameEN, rc.Agency))
	}
	field("Cơ quan được cung cấp", "Recipient", strings.Join(recipients, "; "))
	pdf.SetY(max(pdf.GetY(), qrTop+side+10))
	width = fullWidth
	field("Thủ tục và mục đích", "Procedure and purpose", c.Procedure+" — "+c.Purpose)
	var cats []string
	for _, k := range r.Categories {
		cats = append(cats, fmt.Sprintf("%s / %s (%s)", k.NameVI, k.NameEN, k.Code))
	}
	field("Loại dữ liệu", "Personal data", strings.Join(cats, "; "))
	field("Hiệu lực", "Valid", "từ / from "+when(c.ValidFrom)+" đến / until "+when(c.ValidUntil))
	uses := fmt.Sprintf("đã dùng / used %d", c.Uses)
	if c.MaxUses != nil {
		uses += fmt.Sprintf(" trên / of %d", *c.MaxUses)
	} else {
		uses += " — không giới hạn số lần trong thời hạn / no limit within the validity"
	}
	field("Số lần sử dụng", "Uses", uses)
	field("Thời hạn lưu giữ bản sao", "Data life", fmt.Sprintf("%d ngày / days", c.DataLifeDays))
	field("Trạng thái", "Status", bilingual(statusWords, c.Status))
	field("Căn cứ pháp lý", "Legal basis", r.LegalBasis)
	field("Rút lại sự đồng ý", "Withdrawal", "Bất cứ lúc nào, trên cổng hoặc qua API: "+r.Withdrawal.API+" / "+r.Withdrawal.How)
	var hist []string
	for _, h := range c.History {
		hist = append(hist, when(h.At)+": "+bilingual(statusWords, h.Status))
	}
	field("Lịch sử", "History", strings.Join(hist, "; "))
	pdf.Br(6)
	write("regular", 8.5, "Mã QR chứa bản tóm tắt biên nhận đã ký (JWS, "+QRVersion+"), kiểm tra được bằng khóa công khai tại /.well-known/jwks.json; "+
		"receipt_sha256 là băm SHA-256 của biên nhận đầy đủ. Tài liệu này được kho ký số (PAdES). / The QR code holds the signed receipt summary (JWS), "+
		"verifiable with the public keys at /.well-known/jwks.json; receipt_sha256 is the SHA-256 of the full receipt. This document is digitally signed by kho (PAdES).")
	if werr != nil {
		return nil, kho.WrapError(kho.EINTERNAL, "consent: receipt layout", werr)
	}
	out, err := pdf.GetBytesPdfReturnErr()
	if err != nil {
		return nil, kho.WrapError(kho.EINTERNAL, "consent: receipt PDF", err)
	}
	return out, nil
}

// qrImage draws the code black on white with a four-module quiet zone.
func qrImage(c *qr.Code) image.Image {
	const quiet, scale = 4, 4
	n := (c.Size + 2*quiet) * scale
	img := image.NewGray(image.Rect(0, 0, n, n))
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			mx, my := x/scale-quiet, y/scale-quiet
			v := color.Gray{Y: 255}
			if mx >= 0 && my >= 0 && mx < c.Size && my < c.Size && c.Black(mx, my) {
				v = color.Gray{}
			}
			img.SetGray(x, y, v)
		}
	}
	return img
}
