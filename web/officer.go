package web

import (
	"context"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"kho"
	"kho/consent"
)

// procedures lists the catalogue's procedures as (code, name), by name.
func (pt *Portal) procedures(ctx context.Context, lang string) [][2]string {
	return pt.catalogueList(ctx, lang, "procedure")
}

// catalogueList lists the catalogue's entries of a kind ("procedure",
// "type") as (code, name in lang), by name.
func (pt *Portal) catalogueList(ctx context.Context, lang, kind string) [][2]string {
	pt.name(ctx, lang, kind, "") // loads the catalogue
	catalogue.mu.Lock()
	defer catalogue.mu.Unlock()
	var out [][2]string
	for k, n := range catalogue.names {
		if code, ok := strings.CutPrefix(k, kind+":"); ok {
			name := n[0]
			if lang == "en" {
				name = n[1]
			}
			out = append(out, [2]string{code, name})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][1] < out[j][1] })
	return out
}

// checkRow is one document type of a procedure's checklist.
type checkRow struct {
	Type, Name, StatusKey string
	Required              bool
	Docs                  []checkDoc
}

type checkDoc struct {
	ID     string
	Issuer string
	Issued string
}

// check is the officer's checklist: pick a procedure and a person (the
// number goes in a POST body, never a URL), and see, document by
// document, what is already digitized and need not be asked for.
func (pt *Portal) check(w http.ResponseWriter, r *http.Request, v *view) error {
	ctx := r.Context()
	data := map[string]any{"Procedures": pt.procedures(ctx, v.Lang)}
	if r.Method == http.MethodPost {
		subject, procedure := kho.SubjectID(strings.TrimSpace(r.PostForm.Get("subject"))), r.PostForm.Get("procedure")
		data["Subject"], data["Procedure"] = string(subject), procedure
		list, err := pt.cfg.Consents.CheckAvailability(ctx, v.Session.Principal, subject, procedure)
		if err != nil {
			return err
		}
		var rows []checkRow
		var notAdmitted []string
		for _, a := range list {
			row := checkRow{Type: a.Type, Name: pt.name(ctx, v.Lang, "type", a.Type), StatusKey: "check." + a.Status, Required: a.Required}
			for _, d := range a.Documents {
				issued := d.IssuedOn
				if t, err := time.Parse(time.DateOnly, d.IssuedOn); err == nil {
					issued = v.Date(t)
				}
				row.Docs = append(row.Docs, checkDoc{ID: string(d.ID), Issuer: pt.issuerName(ctx, v.Lang, d.Issuer), Issued: issued})
			}
			if a.Status == "not_admitted" {
				notAdmitted = append(notAdmitted, a.Type)
			}
			rows = append(rows, row)
		}
		data["Rows"], data["NotAdmitted"] = rows, strings.Join(notAdmitted, ",")
		data["ProcedureName"] = pt.name(ctx, v.Lang, "procedure", procedure)
	}
	if f := r.URL.Query().Get("requested"); f != "" {
		v.Flash = v.T("check.requested")
	}
	v.Title = v.T("check.title")
	v.Data = data
	return pt.render(w, http.StatusOK, "check", v)
}

func (pt *Portal) issuerName(ctx context.Context, lang, issuer string) string {
	if issuer == "" {
		return tr(lang, "docs.selfdecl")
	}
	return pt.name(ctx, lang, "agency", issuer)
}

// askConsent sends the person a consent request for the types no consent
// admits yet: once, for 30 days, the copy deleted 30 days after use.
func (pt *Portal) askConsent(w http.ResponseWriter, r *http.Request, v *view) error {
	f := r.PostForm
	types := strings.Split(f.Get("types"), ",")
	days, _ := strconv.Atoi(f.Get("days"))
	if days < 1 || days > 365 {
		days = 30
	}
	_, err := pt.cfg.Consents.RequestConsent(r.Context(), v.Session.Principal, consent.Terms{SubjectID: kho.SubjectID(f.Get("subject")),
		Procedure: f.Get("procedure"), Purpose: f.Get("purpose"), DocumentTypes: types, ValidUntil: time.Now().AddDate(0, 0, days),
		Mode: "once", DataLifeDays: 30})
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/check?requested=1", http.StatusSeeOther)
	return nil
}

// fetch gives the officer a document for a procedure, under the same
// decision as the API's fetch: consent or legal basis, recorded, with a
// use receipt.
func (pt *Portal) fetch(w http.ResponseWriter, r *http.Request, v *view) error {
	c, err := pt.cfg.Documents.Fetch(r.Context(), v.Session.Principal, kho.DocumentID(r.PathValue("id")), r.PostForm.Get("procedure"), nil)
	if err != nil {
		return err
	}
	serveContent(w, c)
	return nil
}
