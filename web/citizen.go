package web

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"kho"
	"kho/audit"
	"kho/policies"
	"kho/storage"
)

// names are the catalogue's names of agencies, document types and
// procedures, in both languages: public reference data, read at most once
// a minute.
type names struct {
	mu    sync.Mutex
	at    time.Time
	names map[string][2]string // "agency:CODE", "type:CODE", "procedure:CODE" → vi, en
}

var catalogue names

func (pt *Portal) name(ctx context.Context, lang, kind, code string) string {
	catalogue.mu.Lock()
	stale := time.Since(catalogue.at) > time.Minute
	if stale {
		catalogue.at = time.Now() // one reader refreshes; the others use what is there
	}
	catalogue.mu.Unlock()
	if stale {
		// Read outside the lock: a slow database slows this page, not all.
		m := map[string][2]string{}
		rows, err := pt.cfg.DB.Pool.Query(ctx, `SELECT 'agency:' || code, name_vi, name_en FROM agencies
			UNION ALL SELECT 'type:' || code, name_vi, name_en FROM document_types
			UNION ALL SELECT 'procedure:' || code, name_vi, name_en FROM procedures`)
		if err == nil {
			for rows.Next() {
				var k, vi, en string
				if rows.Scan(&k, &vi, &en) == nil {
					m[k] = [2]string{vi, en}
				}
			}
			rows.Close()
			if rows.Err() == nil {
				catalogue.mu.Lock()
				catalogue.names = m
				catalogue.mu.Unlock()
			}
		}
		if err != nil || rows.Err() != nil {
			catalogue.mu.Lock()
			catalogue.at = time.Now().Add(-55 * time.Second) // try again in a few seconds
			catalogue.mu.Unlock()
		}
	}
	catalogue.mu.Lock()
	defer catalogue.mu.Unlock()
	n, ok := catalogue.names[kind+":"+code]
	if !ok {
		return code
	}
	if lang == "en" {
		return n[1]
	}
	return n[0]
}

// switchStore changes whose store the pages show: the person's own, or a
// current delegation's. Anything else is refused here, and the services
// would refuse it anyway.
func (pt *Portal) switchStore(w http.ResponseWriter, r *http.Request, v *view) error {
	to := kho.SubjectID(r.PostForm.Get("store"))
	ok := to == ""
	for _, d := range v.Delegations {
		ok = ok || d.Subject == to
	}
	if !ok {
		return kho.Errorf(kho.EFORBIDDEN, "you do not act for that store")
	}
	if err := pt.setActingFor(r.Context(), v.Session, to); err != nil {
		return err
	}
	http.Redirect(w, r, localPath(r.PostForm.Get("back")), http.StatusSeeOther)
	return nil
}

// storeOf is whose store the session shows: a ward's or a business's when
// it switched to one, else its own ("" to the services).
func storeOf(v *view) kho.SubjectID { return v.Session.ActingFor }

func (pt *Portal) home(w http.ResponseWriter, r *http.Request, v *view) error {
	v.Title = v.T("nav.home")
	pending := 0
	type note struct {
		Key string
		At  time.Time
	}
	var notes []note
	if v.Session != nil && isOwnerSide(v.Session.Principal) {
		// A representative whose role ended still gets the home page,
		// without what it may no longer read.
		rs, err := pt.cfg.Consents.Requests(r.Context(), v.Session.Principal, storeOf(v))
		if err != nil && !refused(err) {
			return err
		}
		for _, q := range rs {
			if q.Status == "pending" {
				pending++
			}
		}
		ns, err := pt.cfg.Consents.Notifications(r.Context(), v.Session.Principal, storeOf(v), 5)
		if err != nil && !refused(err) {
			return err
		}
		for _, n := range ns {
			notes = append(notes, note{Key: "topic." + n.Topic, At: n.At})
		}
	}
	v.Data = map[string]any{"Pending": pending, "Notes": notes}
	return pt.render(w, http.StatusOK, "home", v)
}

// refused says an error is a "no" to the caller, not an outage.
func refused(err error) bool {
	c := kho.ErrorCode(err)
	return c == kho.EFORBIDDEN || c == kho.ENOTFOUND
}

func isOwnerSide(p kho.Principal) bool {
	return p.Kind == kho.PrincipalCitizen || p.Kind == kho.PrincipalBusinessRep
}

// docRow is one document as the list shows it.
type docRow struct {
	ID, Type, Name, Issuer, Status, StatusKey string
	Issued, ValidUntil                        time.Time
	SelfDeclared                              bool
}

func (pt *Portal) documents(w http.ResponseWriter, r *http.Request, v *view) error {
	ctx := r.Context()
	page, err := pt.cfg.Documents.ListFor(ctx, v.Session.Principal, storeOf(v), storage.ListFilter{Limit: 200})
	if err != nil {
		return err
	}
	var rows []docRow
	for _, d := range page.Documents {
		st := d.EffectiveStatus(time.Now())
		row := docRow{ID: string(d.ID), Type: pt.name(ctx, v.Lang, "type", d.Type), Name: d.Name, Issuer: pt.name(ctx, v.Lang, "agency", string(d.Issuer)),
			StatusKey: "status." + string(st), Issued: d.IssueOn.Time, SelfDeclared: d.Source == kho.SourceSelfDeclared}
		if d.ValidUntil != nil {
			row.ValidUntil = d.ValidUntil.Time
		}
		rows = append(rows, row)
	}
	v.Title = v.T("docs.title")
	if r.URL.Query().Get("uploaded") != "" {
		v.Flash = v.T("up.done")
	}
	v.Data = rows
	return pt.render(w, http.StatusOK, "documents", v)
}

// download streams a document to its reader; the read is recorded by the
// service like any other.
func (pt *Portal) download(w http.ResponseWriter, r *http.Request, v *view) error {
	c, err := pt.cfg.Documents.Open(r.Context(), v.Session.Principal, kho.DocumentID(r.PathValue("id")), nil)
	if err != nil {
		return err
	}
	serveContent(w, c)
	return nil
}

// serveContent sends a document as an attachment. Once the first byte is
// out no error page can follow: a read that fails (integrity, or MinIO
// gone) aborts the connection, so the browser never keeps a partial file
// as whole.
func serveContent(w http.ResponseWriter, c *storage.Content) {
	defer c.Body.Close()
	h := w.Header()
	h.Set("Content-Type", c.Document.MediaType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s"`, c.Document.ID))
	h.Set("Content-Length", strconv.FormatInt(c.Document.Size, 10))
	if c.UseReceiptID != "" {
		h.Set("Kho-Use-Receipt-Id", c.UseReceiptID)
	}
	if _, err := io.Copy(w, c.Body); err != nil {
		panic(http.ErrAbortHandler)
	}
}

// requestView is a consent request explained in plain words.
type requestView struct {
	ID, Sentence, Purpose, Uses, Life string
	Until                             time.Time
}

func (pt *Portal) requests(w http.ResponseWriter, r *http.Request, v *view) error {
	ctx := r.Context()
	rs, err := pt.cfg.Consents.Requests(ctx, v.Session.Principal, storeOf(v))
	if err != nil {
		return err
	}
	var out []requestView
	for _, q := range rs {
		if q.Status != "pending" {
			continue
		}
		var types []string
		for _, t := range q.Terms.DocumentTypes {
			types = append(types, pt.name(ctx, v.Lang, "type", t))
		}
		rv := requestView{ID: q.ID, Purpose: q.Terms.Purpose, Until: q.Terms.ValidUntil,
			Sentence: v.T("req.sentence", pt.name(ctx, v.Lang, "agency", q.Agency), strings.Join(types, ", "), pt.name(ctx, v.Lang, "procedure", q.Terms.Procedure))}
		switch {
		case q.Terms.Mode == "once":
			rv.Uses = v.T("req.uses.once")
		case q.Terms.MaxUses != nil:
			rv.Uses = v.T("req.uses.n", *q.Terms.MaxUses)
		default:
			rv.Uses = v.T("req.uses.any")
		}
		if q.Terms.DataLifeDays > 0 {
			rv.Life = v.T("req.life.days", q.Terms.DataLifeDays)
		}
		out = append(out, rv)
	}
	v.Title = v.T("req.title")
	v.Flash = flashOf(r, v)
	v.Data = out
	return pt.render(w, http.StatusOK, "requests", v)
}

// flashOf says what the last answer did, from the redirect's query.
func flashOf(r *http.Request, v *view) string {
	switch r.URL.Query().Get("done") {
	case "approved":
		return v.T("req.done.approved")
	case "denied":
		return v.T("req.done.denied")
	case "pending":
		return v.T("req.done.pending")
	}
	return ""
}

// answer approves or denies a request, then shows the list again.
func (pt *Portal) answer(w http.ResponseWriter, r *http.Request, v *view) error {
	approve := r.PostForm.Get("decision") == "approve"
	if !approve && r.PostForm.Get("decision") != "deny" {
		return kho.Errorf(kho.EINVALID, "decision must be approve or deny")
	}
	a, err := pt.cfg.Consents.Answer(r.Context(), v.Session.Principal, r.PathValue("id"), approve, storeOf(v))
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/requests?done="+a.Status, http.StatusSeeOther)
	return nil
}

// logLine is one access told as a sentence.
type logLine struct {
	Sentence string
	Basis    bool // taken on a legal basis, not a consent
	Refused  bool
}

func (pt *Portal) accessLog(w http.ResponseWriter, r *http.Request, v *view) error {
	ctx := r.Context()
	p := v.Session.Principal
	st, err := pt.cfg.Documents.StoreFor(ctx, p, policies.ReadAccessLog, storeOf(v))
	if err != nil {
		return err
	}
	var lines []logLine
	if st.Exists {
		page, err := pt.cfg.Audit.Search(ctx, audit.Filter{Subject: st.Handle, Limit: 200})
		if err != nil {
			return err
		}
		if err := pt.cfg.Audit.Record(ctx, audit.Event{Action: audit.AccessLogRead, Outcome: audit.Success, Actor: p, Subject: st.Handle, ActingFor: st.ActingFor()}); err != nil {
			return err
		}
		types := map[string]string{}
		if docs, err := pt.cfg.Documents.ListFor(ctx, p, storeOf(v), storage.ListFilter{Limit: 200}); err == nil {
			for _, d := range docs.Documents {
				types[string(d.ID)] = pt.name(ctx, v.Lang, "type", d.Type)
			}
		}
		show := r.URL.Query().Get("show")
		for _, e := range page.Events {
			l, ok := pt.sentence(ctx, v, e.Entry, types)
			switch {
			case !ok:
			case show == "fetches" && (e.Entry.Action != audit.DocumentRead || l.Refused):
			case show == "refused" && !l.Refused:
			default:
				lines = append(lines, l)
			}
		}
	}
	v.Title = v.T("log.title")
	v.Data = map[string]any{"Lines": lines, "Show": r.URL.Query().Get("show")}
	return pt.render(w, http.StatusOK, "log", v)
}

// sentence tells an event in words; the owner's own listings and log
// readings are left out.
func (pt *Portal) sentence(ctx context.Context, v *view, e *audit.Entry, types map[string]string) (logLine, bool) {
	at, _ := time.Parse(time.RFC3339Nano, e.Time)
	when := v.Time(at)
	who := v.T("log.you")
	if e.ActorAgency != "" {
		who = pt.name(ctx, v.Lang, "agency", e.ActorAgency)
	}
	doc := types[e.Document]
	if doc == "" {
		doc = v.T("a.document")
	}
	agencyActs := e.ActorKind == string(kho.PrincipalAgency) || e.ActorKind == string(kho.PrincipalAgencyOfficer)
	if agencyActs && e.Outcome != audit.Success && e.Action != audit.DocumentRead {
		return logLine{Sentence: v.T("log.refused.action", who, v.T(actionKey(e.Action)), when, v.T(reasonKey(e.Reason))), Refused: true}, true
	}
	switch {
	case e.Action == audit.DocumentRead && agencyActs && e.Purpose != "" && e.Outcome == audit.Success:
		proc := pt.name(ctx, v.Lang, "procedure", e.Purpose)
		if e.LegalBasis != "" {
			return logLine{Sentence: v.T("log.fetch.basis", who, doc, when, proc, e.LegalBasis), Basis: true}, true
		}
		return logLine{Sentence: v.T("log.fetch.consent", who, doc, when, proc, shortID(e.ConsentID))}, true
	case e.Action == audit.DocumentRead && agencyActs && e.Outcome == audit.Denied:
		return logLine{Sentence: v.T("log.refused", who, doc, when, v.T(reasonKey(e.Reason))), Refused: true}, true
	case e.Action == audit.DocumentRead && agencyActs:
		return logLine{Sentence: v.T("log.read", who, doc, when)}, true
	case e.Action == audit.DocumentDeposited:
		return logLine{Sentence: v.T("log.deposit", who, doc, when)}, true
	case e.Action == audit.ConsentRequested && agencyActs && e.Purpose != "":
		return logLine{Sentence: v.T("log.requested", who, when, pt.name(ctx, v.Lang, "procedure", e.Purpose))}, true
	case e.Action == audit.AvailabilityCheck && agencyActs && e.Purpose != "":
		return logLine{Sentence: v.T("log.availability", who, pt.name(ctx, v.Lang, "procedure", e.Purpose), when)}, true
	case e.Action == audit.StoreResolved && agencyActs:
		return logLine{Sentence: v.T("log.resolved", who, when)}, true
	case !agencyActs:
		return logLine{}, false
	}
	return logLine{Sentence: v.T("log.other", who, v.T(actionKey(e.Action)), when)}, true
}

// actionKey and reasonKey name an action's or a refusal's words; ones the
// catalogue of words lacks are told in general terms, never as codes.
func actionKey(action string) string {
	if _, ok := messages["vi"]["action."+action]; ok {
		return "action." + action
	}
	return "action.other"
}

func reasonKey(reason string) string {
	if _, ok := messages["vi"]["reason."+reason]; ok {
		return "reason." + reason
	}
	return "reason.other"
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
