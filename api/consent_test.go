package api_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"kho"
	"kho/consent"
	"kho/internal/testenv"
)

// The scenario of the consent issue, over HTTP: agency A deposits a birth
// certificate; agency B, issuing a passport, sees it is available, is
// refused without consent, asks, the citizen approves, B fetches the exact
// bytes, the citizen revokes, B is refused again; the audit trail has every
// step.
func TestConsentEndToEnd(t *testing.T) {
	d := newDocServer(t, 0)
	ctx := testenv.Context(t)
	birth := []byte("GIẤY KHAI SINH — Nguyễn Văn A, sinh ngày 01/01/1990")
	doc := d.deposit(t, justice, strings.Replace(textMeta, `"type":"GKS"`, `"type":"GKS"`, 1), birth)
	content := "/v1/documents/" + string(doc.ID) + "/content?procedure=CHC"

	// B asks what is already digitized for the passport procedure.
	resp, b := d.call(t, police, "POST", "/v1/availability", "application/json", strings.NewReader(`{"subject_id":"001090000001","procedure":"CHC"}`), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("availability: %d %s", resp.StatusCode, b)
	}
	var avail struct {
		Types []struct {
			Type      string `json:"type"`
			Required  bool   `json:"required"`
			Status    string `json:"status"`
			Documents []struct {
				ID string `json:"id"`
			} `json:"documents"`
		} `json:"document_types"`
	}
	_ = json.Unmarshal(b, &avail)
	found := false
	for _, a := range avail.Types {
		if a.Type == "GKS" && a.Status == "available" && len(a.Documents) == 1 && a.Documents[0].ID == string(doc.ID) {
			found = true
		}
		if a.Type == "CCCD" && a.Status != "missing" {
			t.Errorf("CCCD: %s, want missing", a.Status)
		}
	}
	if !found {
		t.Fatalf("the birth certificate is not shown available: %s", b)
	}

	// Without consent: refused, with a reason.
	resp, b = d.call(t, police, "GET", content, "", nil, nil)
	if resp.StatusCode != 403 || !bytes.Contains(b, []byte(`"reason":"consent_required"`)) {
		t.Fatalf("fetch without consent: %d %s", resp.StatusCode, b)
	}

	// B requests consent; C sees and approves it.
	until := time.Now().Add(7 * 24 * time.Hour).UTC().Format(time.RFC3339)
	resp, b = d.call(t, police, "POST", "/v1/consent-requests", "application/json", strings.NewReader(fmt.Sprintf(
		`{"subject_id":"001090000001","procedure":"CHC","purpose":"Cấp hộ chiếu phổ thông / passport issuance","document_types":["GKS"],"valid_until":%q,"mode":"standing","max_uses":3,"data_life_days":30}`, until)), nil)
	if resp.StatusCode != 201 {
		t.Fatalf("request consent: %d %s", resp.StatusCode, b)
	}
	var req struct{ ID string }
	_ = json.Unmarshal(b, &req)
	resp, b = d.call(t, citizen, "GET", "/v1/consent-requests", "", nil, nil)
	if resp.StatusCode != 200 || !bytes.Contains(b, []byte(req.ID)) {
		t.Fatalf("citizen's requests: %d %s", resp.StatusCode, b)
	}
	resp, b = d.call(t, stranger, "POST", "/v1/consent-requests/"+req.ID+"/approval", "", nil, nil)
	if resp.StatusCode != 404 {
		t.Fatalf("another citizen approves: %d %s", resp.StatusCode, b)
	}
	resp, b = d.call(t, citizen, "POST", "/v1/consent-requests/"+req.ID+"/approval", "", nil, nil)
	if resp.StatusCode != 201 {
		t.Fatalf("approve: %d %s", resp.StatusCode, b)
	}
	var granted struct {
		ID        string `json:"id"`
		Status    string `json:"status"`
		GrantedBy string `json:"granted_by"`
	}
	_ = json.Unmarshal(b, &granted)
	if granted.Status != "active" || granted.GrantedBy != "self" {
		t.Fatalf("consent: %s", b)
	}

	// B fetches the exact bytes, with a use receipt to keep.
	resp, b = d.call(t, police, "GET", content, "", nil, nil)
	if resp.StatusCode != 200 || !bytes.Equal(b, birth) {
		t.Fatalf("fetch with consent: %d %q", resp.StatusCode, b)
	}
	checkUseReceipt(t, d, resp, doc, granted.ID, birth)

	// C previews the withdrawal, then revokes; B's very next fetch is refused.
	resp, b = d.call(t, citizen, "POST", "/v1/consents/"+granted.ID+"/revocation?preview=true", "", nil, nil)
	if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"uses_left":2`)) || !bytes.Contains(b, []byte(`"grantee":"000.00.15.H29"`)) {
		t.Fatalf("withdrawal preview: %d %s", resp.StatusCode, b)
	}
	resp, b = d.call(t, citizen, "POST", "/v1/consents/"+granted.ID+"/revocation", "application/json", strings.NewReader(`{"reason":"đã xong / done"}`), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("revoke: %d %s", resp.StatusCode, b)
	}
	resp, b = d.call(t, police, "GET", content, "", nil, nil)
	if resp.StatusCode != 403 || !bytes.Contains(b, []byte(`"reason":"consent_revoked"`)) || bytes.Contains(b, []byte("GIẤY")) {
		t.Fatalf("fetch after revocation: %d %s", resp.StatusCode, b)
	}

	// The trail, in order.
	rows, err := d.docs.DB.Pool.Query(ctx, `SELECT action, outcome, coalesce(reason, ''), coalesce(consent_id::text, '') FROM audit_events
		WHERE subject_handle = $1 ORDER BY leaf_index`, doc.Subject)
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for rows.Next() {
		var action, outcome, reason, consentID string
		_ = rows.Scan(&action, &outcome, &reason, &consentID)
		step := action + "/" + outcome
		if reason != "" {
			step += "/" + reason
		}
		if consentID == granted.ID {
			step += "/consent"
		}
		steps = append(steps, step)
	}
	rows.Close()
	want := []string{
		"document.deposited/success", "availability.checked/success", "document.read/denied/consent_required",
		// The other citizen's attempt to approve is on C's record too.
		"consent.requested/success", "consent.granted/denied/not_found", "consent.granted/success/consent", "document.read/success/consent",
		// The use receipt's check reads the consent receipt.
		"consent.read/success/consent",
		"consent.revoked/success/consent", "document.read/denied/consent_revoked",
	}
	var got []string
	receiptReads := map[string]int{}
	for _, s := range steps {
		if strings.HasPrefix(s, "use_receipt.read") {
			// Checked below: their order follows the check's.
			receiptReads[s]++
			continue
		}
		if !strings.HasPrefix(s, "documents.listed") && !strings.HasPrefix(s, "document.metadata") {
			got = append(got, s)
		}
	}
	// The agency and the citizen read the use receipt; the other agency
	// and the other citizen were refused: all four on the record.
	if receiptReads["use_receipt.read/success"] != 2 || receiptReads["use_receipt.read/denied/not_found"] != 2 {
		t.Fatalf("use receipt reads on the record: %v", receiptReads)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit trail:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Both sides were notified through the outbox: the citizen of the
	// request, the agency of the grant and of the revocation.
	rows, err = d.docs.DB.Pool.Query(ctx, `SELECT topic, coalesce(payload->>'agency', '') FROM outbox WHERE subject_handle = $1 AND topic LIKE 'consent.%' ORDER BY id`, doc.Subject)
	if err != nil {
		t.Fatal(err)
	}
	var notes []string
	for rows.Next() {
		var topic, agency string
		_ = rows.Scan(&topic, &agency)
		notes = append(notes, topic+"/"+agency)
	}
	rows.Close()
	if strings.Join(notes, " ") != "consent.requested/000.00.15.H29 consent.granted/000.00.15.H29 consent.revoked/000.00.15.H29" {
		t.Fatalf("notifications: %v", notes)
	}
}

// The receipt is verified by an independent JOSE implementation (go-jose),
// with the key fetched from /.well-known/jwks.json.
func TestConsentReceiptVerifiesWithGoJose(t *testing.T) {
	d := newDocServer(t, 0)
	until := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	resp, b := d.call(t, citizen, "POST", "/v1/me/consents", "application/json", strings.NewReader(fmt.Sprintf(
		`{"grantee":"000.00.15.H29","procedure":"CHC","purpose":"Cấp hộ chiếu / passport","document_types":["GKS"],"valid_until":%q,"mode":"once","data_life_days":0}`, until)), nil)
	if resp.StatusCode != 201 {
		t.Fatalf("grant: %d %s", resp.StatusCode, b)
	}
	var c struct{ ID string }
	_ = json.Unmarshal(b, &c)
	resp, b = d.call(t, citizen, "POST", "/v1/consents/"+c.ID+"/pause", "", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("pause: %d %s", resp.StatusCode, b)
	}
	resp, receipt := d.call(t, citizen, "GET", "/v1/consents/"+c.ID+"/receipt", "", nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/jose" {
		t.Fatalf("receipt: %d %s", resp.StatusCode, receipt)
	}
	resp, jwksBody := request(t, "GET", d.url+"/.well-known/jwks.json", "", "", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("jwks: %d %s", resp.StatusCode, jwksBody)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwksBody, &set); err != nil {
		t.Fatal(err)
	}
	sig, err := jose.ParseSigned(string(receipt), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	kid := sig.Signatures[0].Header.KeyID
	keys := set.Key(kid)
	if len(keys) != 1 {
		t.Fatalf("kid %q not in the JWKS", kid)
	}
	payload, err := sig.Verify(keys[0])
	if err != nil {
		t.Fatalf("go-jose does not verify the receipt: %v", err)
	}
	var artefact struct {
		ID      string `json:"id"`
		Status  string `json:"status"`
		Grantee string `json:"grantee"`
		Mode    string `json:"mode"`
		MaxUses int    `json:"max_uses"`
		History []struct {
			Status string `json:"status"`
		} `json:"history"`
	}
	if err := json.Unmarshal(payload, &artefact); err != nil {
		t.Fatal(err)
	}
	if artefact.ID != c.ID || artefact.Status != "paused" || artefact.Grantee != "000.00.15.H29" || artefact.Mode != "once" || artefact.MaxUses != 1 ||
		len(artefact.History) != 2 || artefact.History[1].Status != "paused" {
		t.Fatalf("receipt artefact: %s", payload)
	}
	// The receipt says what ISO/IEC TS 27560 and the Account Aggregator
	// artefact ask, and who issued it when.
	var claims struct {
		Iss          string `json:"iss"`
		Jti          string `json:"jti"`
		Sub          string `json:"sub"`
		Iat          int64  `json:"iat"`
		Jurisdiction string `json:"jurisdiction"`
		Language     string `json:"language"`
		Controller   struct {
			Name    string `json:"name"`
			Contact string `json:"contact"`
		} `json:"controller"`
		LegalBasis string `json:"legal_basis"`
		Categories []struct {
			Code   string `json:"code"`
			NameVI string `json:"name_vi"`
		} `json:"pii_categories"`
		Recipients []struct {
			Agency string `json:"agency"`
		} `json:"recipients"`
		Withdrawal struct {
			API string `json:"api"`
		} `json:"withdrawal"`
		PolicyVersion string `json:"policy_version"`
		DataLife      struct {
			Unit string `json:"unit"`
		} `json:"data_life"`
		F string `json:"fetch_type"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.Iss == "" || claims.Jti == "" || claims.Sub == "" || claims.Iat == 0 || claims.Controller.Name == "" || claims.Controller.Contact == "" ||
		!strings.Contains(claims.LegalBasis, "13/2023") || claims.Jurisdiction != "VN" || claims.Language != "vi" ||
		len(claims.Categories) != 1 || claims.Categories[0].NameVI != "Giấy khai sinh" || len(claims.Recipients) != 1 || claims.Recipients[0].Agency != "000.00.15.H29" ||
		!strings.Contains(claims.Withdrawal.API, c.ID) || claims.PolicyVersion == "" || claims.F != "ONETIME" || claims.DataLife.Unit != "DAY" {
		t.Fatalf("receipt claims: %s", payload)
	}
	if strings.Contains(string(payload), "001090000001") {
		t.Fatal("the receipt carries the person's number")
	}
	// A verifier sharing no code with kho (node, the jose library)
	// verifies it with the published JWKS.
	out, err := joseVerify(t, receipt, jwksBody, consent.ReceiptType)
	if err != nil || !strings.Contains(string(out), `"jti":"`+claims.Jti+`"`) {
		t.Fatalf("independent verifier: %v\n%s", err, out)
	}
	// A byte changed in the payload breaks it.
	parts := strings.Split(string(receipt), ".")
	parts[1] = strings.Replace(parts[1], parts[1][10:11], flipB64(parts[1][10:11]), 1)
	if forged, err := jose.ParseSigned(strings.Join(parts, "."), []jose.SignatureAlgorithm{jose.ES256}); err == nil {
		if _, err := forged.Verify(keys[0]); err == nil {
			t.Fatal("a forged receipt verifies")
		}
	}
	if out, err := joseVerify(t, []byte(strings.Join(parts, ".")), jwksBody, consent.ReceiptType); err == nil {
		t.Fatalf("the independent verifier accepts a forged receipt:\n%s", out)
	}
	_ = kho.StatusValid
}

// joseVerify runs scripts/node/verify-receipt.mjs: node and the jose
// library verify a compact JWS against a JWKS and its typ.
func joseVerify(t *testing.T, jws, jwks []byte, typ string) ([]byte, error) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is needed for the independent verifier (scripts/ensure-tools installs it)")
	}
	dir := t.TempDir()
	jf, kf := filepath.Join(dir, "receipt.jws"), filepath.Join(dir, "jwks.json")
	_ = os.WriteFile(jf, jws, 0o600)
	_ = os.WriteFile(kf, jwks, 0o600)
	return exec.Command(node, "../scripts/node/verify-receipt.mjs", jf, kf, typ).CombinedOutput()
}

func flipB64(c string) string {
	if c == "A" {
		return "B"
	}
	return "A"
}

// The printed receipt, checked only with tools kho's authors did not
// write: pdfsig finds kho's signature valid and trusted, Poppler's text
// shows Vietnamese with its diacritics, zbar reads the QR code from the
// rendered page, and node's jose verifies what it holds against the JWKS,
// bound by its hash to the receipt the API serves.
func TestPrintedReceiptIsSignedAndItsQRVerifies(t *testing.T) {
	d := newDocServer(t, 0)
	until := time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)
	resp, b := d.call(t, citizen, "POST", "/v1/me/consents", "application/json", strings.NewReader(fmt.Sprintf(
		`{"grantee":"000.00.15.H29","procedure":"CHC","purpose":"Cấp hộ chiếu phổ thông / Ordinary passport","document_types":["GKS"],"valid_until":%q,"mode":"standing","max_uses":3,"data_life_days":90}`, until)), nil)
	if resp.StatusCode != 201 {
		t.Fatalf("grant: %d %s", resp.StatusCode, b)
	}
	var c struct{ ID string }
	_ = json.Unmarshal(b, &c)
	_, receipt := d.call(t, citizen, "GET", "/v1/consents/"+c.ID+"/receipt", "", nil, nil)
	resp, pdf := d.call(t, citizen, "GET", "/v1/consents/"+c.ID+"/receipt.pdf", "", nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pdf" || !bytes.HasPrefix(pdf, []byte("%PDF-")) {
		t.Fatalf("receipt.pdf: %d %s %.200s", resp.StatusCode, resp.Header.Get("Content-Type"), pdf)
	}
	dir := t.TempDir()
	pdfFile := filepath.Join(dir, "receipt.pdf")
	_ = os.WriteFile(pdfFile, pdf, 0o600)

	// pdfsig, trusting the deployment root.
	root, err := d.docs.Keys.RootCertificate(testenv.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	nss := filepath.Join(dir, "nss")
	_ = os.Mkdir(nss, 0o700)
	rootFile := filepath.Join(dir, "root.pem")
	_ = os.WriteFile(rootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}), 0o600)
	for _, args := range [][]string{{"-N", "-d", "sql:" + nss, "--empty-password"}, {"-A", "-d", "sql:" + nss, "-n", "root", "-t", "C,C,", "-a", "-i", rootFile}} {
		if out, err := exec.Command("certutil", args...).CombinedOutput(); err != nil {
			t.Fatalf("certutil: %v\n%s", err, out)
		}
	}
	out, _ := exec.Command("pdfsig", "-nssdir", "sql:"+nss, pdfFile).CombinedOutput()
	if !strings.Contains(string(out), "Signature Validation: Signature is Valid.") || !strings.Contains(string(out), "Certificate Validation: Certificate is Trusted.") ||
		!strings.Contains(string(out), "Total document signed") || !strings.Contains(string(out), "kho (test deployment)") {
		t.Fatalf("pdfsig:\n%s", out)
	}
	// Poppler's text: Vietnamese first, with diacritics, then English.
	text, err := exec.Command("pdftotext", "-layout", pdfFile, "-").CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext: %v\n%s", err, text)
	}
	for _, want := range []string{"BIÊN NHẬN ĐỒNG Ý XỬ LÝ DỮ LIỆU CÁ NHÂN", "Consent receipt", "Cấp hộ chiếu phổ thông", "Giấy khai sinh", "đang hiệu lực / active", c.ID} {
		if !strings.Contains(string(text), want) {
			t.Fatalf("the printed receipt does not say %q:\n%s", want, text)
		}
	}
	if strings.Contains(string(text), "001090000001") {
		t.Fatal("the printed receipt shows the person's number")
	}
	// zbar reads the QR code off the page rendered at 150 dpi.
	if out, err := exec.Command("pdftoppm", "-r", "150", "-f", "1", "-l", "1", "-png", pdfFile, filepath.Join(dir, "page")).CombinedOutput(); err != nil {
		t.Fatalf("pdftoppm: %v\n%s", err, out)
	}
	pages, _ := filepath.Glob(filepath.Join(dir, "page*.png"))
	if len(pages) != 1 {
		t.Fatalf("pdftoppm wrote %v", pages)
	}
	qr, err := exec.Command("zbarimg", "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", pages[0]).Output()
	if err != nil {
		t.Fatalf("zbarimg found no QR code: %v", err)
	}
	qr = bytes.TrimSpace(qr)
	// node's jose verifies it with the published keys.
	_, jwksBody := request(t, "GET", d.url+"/.well-known/jwks.json", "", "", nil, nil)
	claimsJSON, err := joseVerify(t, qr, jwksBody, consent.QRType)
	if err != nil {
		t.Fatalf("jose does not verify the QR code's JWS: %v\n%s", err, claimsJSON)
	}
	var claims consent.QRSummary
	if err := json.Unmarshal(claimsJSON, &claims); err != nil {
		t.Fatalf("%v: %s", err, claimsJSON)
	}
	sum := sha256.Sum256(bytes.TrimSpace(receipt))
	if claims.ConsentID != c.ID || claims.Status != "active" || claims.Grantee != "000.00.15.H29" || claims.MaxUses == nil || *claims.MaxUses != 3 ||
		claims.ReceiptHash != base64.RawURLEncoding.EncodeToString(sum[:]) || claims.Version != consent.QRVersion {
		t.Fatalf("QR claims: %s", claimsJSON)
	}
	// The same JWS with its payload changed does not verify.
	parts := strings.Split(string(qr), ".")
	parts[1] = strings.Replace(parts[1], parts[1][12:13], flipB64(parts[1][12:13]), 1)
	if out, err := joseVerify(t, []byte(strings.Join(parts, ".")), jwksBody, consent.QRType); err == nil {
		t.Fatalf("jose accepts a forged QR code:\n%s", out)
	}
	// Other spellings of the id name nothing: 404, never a server error.
	for _, id := range []string{"urn:uuid:" + c.ID, strings.ToUpper(c.ID), "{" + c.ID + "}", strings.ReplaceAll(c.ID, "-", "")} {
		for _, suffix := range []string{"", "/receipt", "/receipt.pdf"} {
			if resp, b := d.call(t, citizen, "GET", "/v1/consents/"+id+suffix, "", nil, nil); resp.StatusCode != 404 {
				t.Fatalf("consent %q%s: %d %s", id, suffix, resp.StatusCode, b)
			}
		}
	}
	// Someone else's store: 404, as for any consent they have no relation to.
	if resp, _ := d.call(t, stranger, "GET", "/v1/consents/"+c.ID+"/receipt.pdf", "", nil, nil); resp.StatusCode != 404 {
		t.Fatalf("another citizen printed the receipt: %d", resp.StatusCode)
	}
}

// checkUseReceipt checks a fetch's use receipt as an agency and a citizen
// would: node's jose verifies it against the JWKS; it names the document,
// its hash, the procedure, the agency and the consent receipt that admitted
// it; the agency and the citizen read it again later, nobody else does.
func checkUseReceipt(t *testing.T, d *docServer, resp *http.Response, doc kho.Document, consentID string, content []byte) {
	t.Helper()
	jws, id := resp.Header.Get("Kho-Use-Receipt"), resp.Header.Get("Kho-Use-Receipt-Id")
	if jws == "" || id == "" {
		t.Fatal("an admitted fetch came without a use receipt")
	}
	_, jwks := request(t, "GET", d.url+"/.well-known/jwks.json", "", "", nil, nil)
	out, err := joseVerify(t, []byte(jws), jwks, consent.UseReceiptType)
	if err != nil {
		t.Fatalf("jose does not verify the use receipt: %v\n%s", err, out)
	}
	var r consent.UseReceipt
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	_, consentReceipt := d.call(t, citizen, "GET", "/v1/consents/"+consentID+"/receipt", "", nil, nil)
	crSum := sha256.Sum256(bytes.TrimSpace(consentReceipt))
	if r.ID != id || r.DocumentID != doc.ID || r.SHA256 != hex.EncodeToString(sum[:]) || r.Procedure != "CHC" || r.Agency != "000.00.15.H29" ||
		r.ConsentID != consentID || r.ConsentHash != base64.RawURLEncoding.EncodeToString(crSum[:]) || r.UsesLeft == nil || r.Subject != doc.Subject {
		t.Fatalf("use receipt: %s", out)
	}
	for who, want := range map[string]int{"police": 200, "citizen": 200, "justice": 404, "stranger": 404} {
		p := map[string]kho.Principal{"police": police, "citizen": citizen, "justice": justice, "stranger": stranger}[who]
		resp, b := d.call(t, p, "GET", "/v1/use-receipts/"+id, "", nil, nil)
		if resp.StatusCode != want || (want == 200 && string(b) != jws) {
			t.Fatalf("%s reads the use receipt: %d %s", who, resp.StatusCode, b)
		}
	}
}
