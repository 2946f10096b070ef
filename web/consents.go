package web

import (
	"net/http"
	"strings"
	"time"

	"kho"
	"kho/consent"
)

// consentView is a consent as the citizen reads it.
type consentView struct {
	ID, Agency, Procedure, Types, StatusKey, Uses, Purpose string
	Until                                                  time.Time
	CanPause, CanResume, CanRevoke                         bool
}

func (pt *Portal) consentViews(r *http.Request, v *view, cs []*consent.Consent) []consentView {
	ctx := r.Context()
	var out []consentView
	for _, c := range cs {
		var types []string
		for _, t := range c.DocumentTypes {
			types = append(types, pt.name(ctx, v.Lang, "type", t))
		}
		cv := consentView{ID: c.ID, Agency: pt.name(ctx, v.Lang, "agency", string(c.Grantee)), Procedure: pt.name(ctx, v.Lang, "procedure", c.Procedure),
			Types: strings.Join(types, ", "), StatusKey: "consent." + c.Status, Until: c.ValidUntil, Purpose: c.Purpose,
			CanPause: c.Status == consent.Active, CanResume: c.Status == consent.Paused, CanRevoke: c.Status == consent.Active || c.Status == consent.Paused || c.Status == consent.UsedUp}
		if c.MaxUses != nil {
			cv.Uses = v.T("consent.uses.of", c.Uses, *c.MaxUses)
		} else {
			cv.Uses = v.T("consent.uses.n", c.Uses)
		}
		out = append(out, cv)
	}
	return out
}

// consents lists the consents given from the store, to pause, resume or
// revoke.
func (pt *Portal) consents(w http.ResponseWriter, r *http.Request, v *view) error {
	cs, err := pt.cfg.Consents.List(r.Context(), v.Session.Principal, storeOf(v))
	if err != nil {
		return err
	}
	v.Title = v.T("nav.consents")
	v.Data = map[string]any{"Consents": pt.consentViews(r, v, cs)}
	switch r.URL.Query().Get("done") {
	case "paused", "active", "revoked":
		v.Flash = v.T("consent.done." + r.URL.Query().Get("done"))
	}
	return pt.render(w, http.StatusOK, "consents", v)
}

// consentStatus pauses, resumes or revokes; revoking first shows what it
// stops and asks to confirm.
func (pt *Portal) consentStatus(w http.ResponseWriter, r *http.Request, v *view) error {
	id, action := r.PathValue("id"), r.PostForm.Get("action")
	status := map[string]string{"pause": consent.Paused, "resume": consent.Active, "revoke": consent.Revoked, "preview": consent.Revoked}[action]
	if status == "" {
		return kho.Errorf(kho.EINVALID, "action must be pause, resume, preview or revoke")
	}
	c, wd, err := pt.cfg.Consents.SetStatus(r.Context(), v.Session.Principal, id, status, "", action == "preview")
	if err != nil {
		return err
	}
	if action == "preview" {
		v.Title = v.T("consent.revoke.title")
		v.Data = map[string]any{"Consent": pt.consentViews(r, v, []*consent.Consent{c})[0], "Effect": pt.effect(r, v, wd)}
		return pt.render(w, http.StatusOK, "revoke", v)
	}
	http.Redirect(w, r, "/consents?done="+status, http.StatusSeeOther)
	return nil
}

// effect says in the page's language what revoking stops.
func (pt *Portal) effect(r *http.Request, v *view, wd *consent.Withdrawal) string {
	if wd == nil {
		return ""
	}
	return v.T("consent.effect", pt.name(r.Context(), v.Lang, "agency", wd.Grantee), pt.name(r.Context(), v.Lang, "procedure", wd.Procedure), wd.DataLifeDays)
}

// verification checks a document end to end (the issuer's signature and
// the stored bytes) and shows the result.
func (pt *Portal) verification(w http.ResponseWriter, r *http.Request, v *view) error {
	rep, err := pt.cfg.Documents.Verify(r.Context(), v.Session.Principal, kho.DocumentID(r.PathValue("id")))
	if err != nil {
		return err
	}
	v.Title = v.T("verify.title")
	v.Data = map[string]any{"Report": rep, "Type": pt.name(r.Context(), v.Lang, "type", rep.Manifest.Type),
		"Issuer": pt.issuerName(r.Context(), v.Lang, strings.TrimPrefix(rep.Signature.Issuer, "self-declared"))}
	return pt.render(w, http.StatusOK, "verification", v)
}

// receipt downloads the consent's latest signed receipt (a compact JWS,
// checked offline with kho receipt verify or any JOSE library).
func (pt *Portal) receipt(w http.ResponseWriter, r *http.Request, v *view) error {
	jws, err := pt.cfg.Consents.Receipt(r.Context(), v.Session.Principal, r.PathValue("id"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/jose")
	w.Header().Set("Content-Disposition", `attachment; filename="consent-receipt.jws"`)
	_, err = w.Write([]byte(jws))
	return err
}
