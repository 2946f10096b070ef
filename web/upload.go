package web

import (
	"crypto/subtle"
	"io"
	"mime/multipart"
	"net/http"
	"strings"

	"kho"
)

// uploadForm offers the self-declared upload: what the paper is, when it
// was issued, the file.
func (pt *Portal) uploadForm(w http.ResponseWriter, r *http.Request, v *view) error {
	v.Title = v.T("up.title")
	v.Data = map[string]any{"Types": pt.catalogueList(r.Context(), v.Lang, "type")}
	return pt.render(w, http.StatusOK, "upload", v)
}

// upload streams a self-declared document into the store the session
// shows. The body's first part must be the CSRF token; the metadata parts
// come before the file, which is never held whole by the portal.
func (pt *Portal) upload(w http.ResponseWriter, r *http.Request, v *view) error {
	mr, err := r.MultipartReader()
	if err != nil {
		return kho.Errorf(kho.EINVALID, "the upload is not a multipart form")
	}
	field := func(p *multipart.Part) string {
		b, _ := io.ReadAll(io.LimitReader(p, 4096))
		return strings.TrimSpace(string(b))
	}
	p, err := mr.NextPart()
	if err != nil || p.FormName() != "csrf" || subtle.ConstantTimeCompare([]byte(field(p)), []byte(v.Session.CSRF)) != 1 {
		return kho.Errorf(kho.EFORBIDDEN, "csrf")
	}
	meta := &kho.DepositMetadata{SubjectID: storeOf(v)}
	for {
		p, err := mr.NextPart()
		if err != nil {
			return kho.Errorf(kho.EINVALID, "the form ended before its file")
		}
		switch p.FormName() {
		case "type":
			meta.Type = field(p)
		case "name":
			meta.Name = field(p)
		case "issued_on":
			d, err := kho.ParseDate(field(p))
			if err != nil {
				return err
			}
			meta.IssuedOn = d
		case "valid_until":
			if s := field(p); s != "" {
				d, err := kho.ParseDate(s)
				if err != nil {
					return err
				}
				meta.ValidUntil = &d
			}
		case "number":
			meta.Number = field(p)
		case "subject":
			// An officer deposits into the person's store; the owner's side
			// into the store the session shows.
			if v.Role == "officer" {
				meta.SubjectID = kho.SubjectID(field(p))
			}
		case "dossier_code":
			meta.DossierCode = kho.DossierCode(field(p))
		case "procedure_code":
			meta.ProcedureCode = field(p)
		case "file":
			meta.MediaType = p.Header.Get("Content-Type")
			if meta.Type == "" || meta.Name == "" || meta.IssuedOn.IsZero() {
				return kho.Errorf(kho.EINVALID, "give the document's type, name and issue date before the file")
			}
			doc, err := pt.cfg.Documents.Deposit(r.Context(), v.Session.Principal, meta, p)
			if err != nil {
				return err
			}
			if v.Role == "officer" {
				// The officer sees it signed in the agency's name.
				http.Redirect(w, r, "/documents/"+string(doc.ID)+"/verification", http.StatusSeeOther)
				return nil
			}
			http.Redirect(w, r, "/documents?uploaded=1", http.StatusSeeOther)
			return nil
		}
	}
}
