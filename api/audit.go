package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"kho"
	"kho/audit"
	"kho/policies"
)

// Audit is the audit trail the routes read; *audit.Log meets it.
type Audit interface {
	Record(ctx context.Context, ev audit.Event) error
	LatestCheckpoint(ctx context.Context) (*audit.Checkpoint, error)
	OpenCheckpoint(text string) (*audit.Checkpoint, error)
	MakeCheckpoint(ctx context.Context) (*audit.Checkpoint, error)
	VerifierKey() string
	Consistency(ctx context.Context, size1, size2 uint64) ([][]byte, error)
	Search(ctx context.Context, f audit.Filter) (*audit.Page, error)
	Export(ctx context.Context, w io.Writer, f audit.Filter) (uint64, error)
	Anomalies(ctx context.Context, now time.Time) ([]audit.Anomaly, error)
	Verify(ctx context.Context) (*audit.Result, error)
}

var _ Audit = (*audit.Log)(nil)

// auditRoutes: the checkpoint, its key and consistency proofs are public, as
// in Certificate Transparency; the rest needs a principal.
func (s *Server) auditRoutes(public *gin.Engine, v1 *gin.RouterGroup) {
	public.GET("/audit/checkpoint", s.checkpoint)
	public.GET("/audit/key", s.auditKey)
	public.GET("/audit/consistency", s.consistency)
	v1.GET("/me/access-log", s.accessLog)
	officer := v1.Group("/audit", s.securityOfficer)
	officer.GET("/events", s.auditEvents)
	officer.GET("/export", s.auditExport)
	officer.GET("/anomalies", s.anomalies)
	officer.GET("/verification", s.auditVerify)
}

func (s *Server) securityOfficer(c *gin.Context) {
	p := principal(c)
	if err := policies.Authorize(p, policies.SearchAudit, policies.Resource{}).Err(); err != nil {
		_ = s.cfg.Audit.Record(c.Request.Context(), audit.Event{Action: audit.AuditSearched, Outcome: audit.Denied, Actor: p, Reason: kho.ErrorMessage(err)})
		writeError(c, err)
		return
	}
	c.Next()
}

func (s *Server) checkpoint(c *gin.Context) {
	cp, err := s.cfg.Audit.LatestCheckpoint(c.Request.Context())
	if err != nil {
		writeError(c, err)
		return
	}
	c.Header("Cache-Control", "no-cache")
	c.Data(http.StatusOK, "text/plain; charset=utf-8", []byte(cp.Note))
}

func (s *Server) auditKey(c *gin.Context) {
	c.Data(http.StatusOK, "text/plain; charset=utf-8", []byte(s.cfg.Audit.VerifierKey()+"\n"))
}

func (s *Server) consistency(c *gin.Context) {
	from, err1 := strconv.ParseUint(c.Query("from"), 10, 64)
	to, err2 := strconv.ParseUint(c.Query("to"), 10, 64)
	if err1 != nil || err2 != nil {
		errorf(c, kho.EINVALID, "from and to must be tree sizes")
		return
	}
	p, err := s.cfg.Audit.Consistency(c.Request.Context(), from, to)
	if err != nil {
		writeError(c, err)
		return
	}
	if p == nil {
		p = [][]byte{}
	}
	c.JSON(http.StatusOK, gin.H{"from": from, "to": to, "hashes": p})
}

// accessLog shows citizens (and business representatives, and guardians
// with ?on_behalf_of=) every event on the store: who, when, why, under which
// consent or legal basis.
func (s *Server) accessLog(c *gin.Context) {
	p := principal(c)
	ctx := c.Request.Context()
	st, err := s.cfg.Documents.StoreFor(ctx, p, policies.ReadAccessLog, onBehalfOfQuery(c))
	if err != nil {
		writeError(c, err)
		return
	}
	if !st.Exists {
		c.JSON(http.StatusOK, audit.Page{Events: []audit.Listed{}})
		return
	}
	h := st.Handle
	limit, err := queryLimit(c)
	if err != nil {
		writeError(c, err)
		return
	}
	page, err := s.cfg.Audit.Search(ctx, audit.Filter{Subject: h, Cursor: c.Query("cursor"), Limit: limit})
	if err != nil {
		writeError(c, err)
		return
	}
	if err := s.cfg.Audit.Record(ctx, audit.Event{Action: audit.AccessLogRead, Outcome: audit.Success, Actor: p, Subject: h, ActingFor: st.ActingFor()}); err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, page)
}

func auditFilter(c *gin.Context) (audit.Filter, error) {
	f := audit.Filter{
		Subject: kho.SubjectHandle(c.Query("subject")), Agency: kho.AgencyCode(c.Query("agency")), Staff: kho.StaffID(c.Query("staff")),
		Document: kho.DocumentID(c.Query("document")), Action: c.Query("action"), Outcome: c.Query("outcome"), Cursor: c.Query("cursor"),
	}
	for _, t := range []struct {
		name string
		into *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if v := c.Query(t.name); v != "" {
			parsed, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return f, kho.Errorf(kho.EINVALID, "%s must be an RFC 3339 time", t.name)
			}
			*t.into = parsed
		}
	}
	n, err := queryLimit(c)
	f.Limit = n
	return f, err
}

func (s *Server) auditEvents(c *gin.Context) {
	f, err := auditFilter(c)
	if err != nil {
		writeError(c, err)
		return
	}
	ctx := c.Request.Context()
	page, err := s.cfg.Audit.Search(ctx, f)
	if err != nil {
		writeError(c, err)
		return
	}
	if err := s.cfg.Audit.Record(ctx, audit.Event{Action: audit.AuditSearched, Outcome: audit.Success, Actor: principal(c), Subject: f.Subject,
		Details: map[string]any{"results": len(page.Events)}}); err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, page)
}

// auditExport streams JSON Lines that `kho audit verify` checks offline.
func (s *Server) auditExport(c *gin.Context) {
	f, err := auditFilter(c)
	if err != nil {
		writeError(c, err)
		return
	}
	if f.Cursor != "" || f.Limit != 0 {
		errorf(c, kho.EINVALID, "an export takes no cursor or limit")
		return
	}
	ctx := c.Request.Context()
	// Recorded before the first line is sent, like every read; then a
	// checkpoint is signed that covers it, and the export stops there:
	// every event in it, the export's own included, is proven.
	if err := s.cfg.Audit.Record(ctx, audit.Event{Action: audit.AuditExported, Outcome: audit.Success, Actor: principal(c), Subject: f.Subject}); err != nil {
		writeError(c, err)
		return
	}
	cp, err := s.cfg.Audit.MakeCheckpoint(ctx)
	if err != nil {
		writeError(c, err)
		return
	}
	f.UpTo = cp.Size
	c.Header("Content-Type", "application/x-ndjson")
	c.Header("Content-Disposition", fmt.Sprintf(`attachment; filename="kho-audit-%s.jsonl"`, time.Now().UTC().Format("20060102T150405Z")))
	c.Status(http.StatusOK)
	if _, err := s.cfg.Audit.Export(ctx, c.Writer, f); err != nil {
		_ = c.Error(err)
		panic(http.ErrAbortHandler) // a truncated export must not look complete
	}
}

func (s *Server) anomalies(c *gin.Context) {
	a, err := s.cfg.Audit.Anomalies(c.Request.Context(), time.Now())
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"anomalies": a})
}

func (s *Server) auditVerify(c *gin.Context) {
	r, err := s.cfg.Audit.Verify(c.Request.Context())
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"valid": r.OK(), "result": r})
}
