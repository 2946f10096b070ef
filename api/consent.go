package api

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"kho"
	"kho/consent"
)

// Consents is the consent service the routes call; *consent.Service meets it.
type Consents interface {
	RequestConsent(ctx context.Context, p kho.Principal, t consent.Terms) (*consent.Request, error)
	Requests(ctx context.Context, p kho.Principal, onBehalfOf kho.SubjectID) ([]consent.Request, error)
	Sent(ctx context.Context, p kho.Principal, id string) (*consent.Request, error)
	Answer(ctx context.Context, p kho.Principal, requestID string, approve bool, onBehalfOf kho.SubjectID) (*consent.Answer, error)
	Grant(ctx context.Context, p kho.Principal, t consent.Terms, onBehalfOf kho.SubjectID) (*consent.Consent, error)
	Get(ctx context.Context, p kho.Principal, id string) (*consent.Consent, error)
	List(ctx context.Context, p kho.Principal, onBehalfOf kho.SubjectID) ([]*consent.Consent, error)
	SetStatus(ctx context.Context, p kho.Principal, id, status, reason string, preview bool) (*consent.Consent, *consent.Withdrawal, error)
	Receipt(ctx context.Context, p kho.Principal, id string) (string, error)
	PrintableReceipt(ctx context.Context, p kho.Principal, id string) (*consent.Printable, error)
	UseReceiptJWS(ctx context.Context, p kho.Principal, id string) (string, error)
	AcknowledgeDeletion(ctx context.Context, p kho.Principal, id string) (time.Time, error)
	Notifications(ctx context.Context, p kho.Principal, onBehalfOf kho.SubjectID, limit int) ([]consent.Notification, error)
	CheckAvailability(ctx context.Context, p kho.Principal, subjectID kho.SubjectID, procedure string) ([]consent.Availability, error)
}

var _ Consents = (*consent.Service)(nil)

func (s *Server) consentRoutes(public *gin.Engine, v1 *gin.RouterGroup) {
	public.GET("/.well-known/jwks.json", s.jwks)
	v1.POST("/availability", s.availability)
	v1.POST("/consent-requests", s.idempotent(whole), s.requestConsent)
	v1.GET("/consent-requests", s.consentRequests)
	v1.POST("/consent-requests/:id/approval", s.idempotent(whole), s.answerRequest(true))
	v1.POST("/consent-requests/:id/denial", s.idempotent(whole), s.answerRequest(false))
	v1.POST("/me/consents", s.idempotent(whole), s.grantConsent)
	v1.GET("/me/consents", s.myConsents)
	v1.GET("/me/notifications", s.myNotifications)
	v1.GET("/consents/:id", s.getConsent)
	v1.GET("/consents/:id/receipt", s.consentReceipt)
	v1.GET("/consents/:id/receipt.pdf", s.consentReceiptPDF)
	v1.GET("/use-receipts/:id", s.useReceipt)
	v1.POST("/use-receipts/:id/deletion", s.acknowledgeDeletion)
	v1.POST("/consents/:id/pause", s.consentStatus(consent.Paused))
	v1.POST("/consents/:id/resume", s.consentStatus(consent.Active))
	v1.POST("/consents/:id/revocation", s.consentStatus(consent.Revoked))
}

// jwks publishes the keys that sign consent receipts.
func (s *Server) jwks(c *gin.Context) {
	set, err := s.cfg.ReceiptKeys(c.Request.Context())
	if err != nil {
		writeError(c, err)
		return
	}
	c.Header("Cache-Control", "public, max-age=300")
	c.JSON(http.StatusOK, set)
}

func (s *Server) availability(c *gin.Context) {
	var body struct {
		SubjectID kho.SubjectID `json:"subject_id" required:"true"`
		Procedure string        `json:"procedure" required:"true"`
	}
	if err := decodeJSON(c, &body); err != nil {
		writeError(c, err)
		return
	}
	a, err := s.cfg.Consents.CheckAvailability(c.Request.Context(), principal(c), body.SubjectID, body.Procedure)
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"procedure": body.Procedure, "document_types": a})
}

func (s *Server) requestConsent(c *gin.Context) {
	if answerCommitted(c, s.cfg.Consents.Sent) {
		return
	}
	var t consent.Terms
	if err := decodeJSON(c, &t); err != nil {
		writeError(c, err)
		return
	}
	r, err := s.cfg.Consents.RequestConsent(c.Request.Context(), principal(c), t)
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusCreated, r)
}

func (s *Server) consentRequests(c *gin.Context) {
	rs, err := s.cfg.Consents.Requests(c.Request.Context(), principal(c), onBehalfOfQuery(c))
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"requests": rs})
}

// onBehalfOf reads the optional ward a guardian acts for.
type onBehalfOf struct {
	OnBehalfOf kho.SubjectID `json:"on_behalf_of,omitempty"`
}

func (s *Server) answerRequest(approve bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		if result, ok := committed(c); ok {
			// An earlier attempt under this Idempotency-Key answered the
			// request before its khod died unanswered: the same answer.
			a, consentID, ok := consent.RecordedAnswer(c.Param("id"), result)
			if !ok {
				errorf(c, kho.EINTERNAL, "the answer recorded under this Idempotency-Key cannot be read")
				return
			}
			if consentID != "" {
				var err error
				if a.Consent, err = s.cfg.Consents.Get(c.Request.Context(), principal(c), consentID); err != nil {
					writeError(c, err)
					return
				}
			}
			writeAnswer(c, a)
			return
		}
		var body onBehalfOf
		if c.Request.ContentLength != 0 {
			if err := decodeJSON(c, &body); err != nil {
				writeError(c, err)
				return
			}
		}
		a, err := s.cfg.Consents.Answer(c.Request.Context(), principal(c), c.Param("id"), approve, body.OnBehalfOf)
		if err != nil {
			writeError(c, err)
			return
		}
		writeAnswer(c, a)
	}
}

// writeAnswer sends the answer to a consent request: the consent an
// approval made, or what was recorded.
func writeAnswer(c *gin.Context, a *consent.Answer) {
	switch a.Status {
	case "approved":
		c.JSON(http.StatusCreated, a.Consent)
	case "pending":
		// Recorded; another party (the guardian, or the child) must
		// approve as well before the consent exists.
		c.JSON(http.StatusAccepted, a)
	default:
		c.JSON(http.StatusOK, a)
	}
}

func (s *Server) grantConsent(c *gin.Context) {
	if answerCommitted(c, s.cfg.Consents.Get) {
		return
	}
	var body struct {
		consent.Terms
		onBehalfOf
	}
	if err := decodeJSON(c, &body); err != nil {
		writeError(c, err)
		return
	}
	cs, err := s.cfg.Consents.Grant(c.Request.Context(), principal(c), body.Terms, body.OnBehalfOf)
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusCreated, cs)
}

func (s *Server) myConsents(c *gin.Context) {
	cs, err := s.cfg.Consents.List(c.Request.Context(), principal(c), onBehalfOfQuery(c))
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"consents": cs})
}

// myNotifications is the owner's inbox: what changed in the store.
func (s *Server) myNotifications(c *gin.Context) {
	limit, err := queryLimit(c)
	if err != nil {
		writeError(c, err)
		return
	}
	ns, err := s.cfg.Consents.Notifications(c.Request.Context(), principal(c), onBehalfOfQuery(c), limit)
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"notifications": ns})
}

func (s *Server) getConsent(c *gin.Context) {
	cs, err := s.cfg.Consents.Get(c.Request.Context(), principal(c), c.Param("id"))
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, cs)
}

// consentReceipt answers with the latest receipt, a compact JWS.
func (s *Server) consentReceipt(c *gin.Context) {
	r, err := s.cfg.Consents.Receipt(c.Request.Context(), principal(c), c.Param("id"))
	if err != nil {
		writeError(c, err)
		return
	}
	c.Data(http.StatusOK, "application/jose", []byte(r))
}

// useReceipt answers with a kept use receipt, a compact JWS.
func (s *Server) useReceipt(c *gin.Context) {
	r, err := s.cfg.Consents.UseReceiptJWS(c.Request.Context(), principal(c), c.Param("id"))
	if err != nil {
		writeError(c, err)
		return
	}
	c.Data(http.StatusOK, "application/jose", []byte(r))
}

// acknowledgeDeletion is the fetching agency saying it deleted its copy.
func (s *Server) acknowledgeDeletion(c *gin.Context) {
	at, err := s.cfg.Consents.AcknowledgeDeletion(c.Request.Context(), principal(c), c.Param("id"))
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"use_receipt": c.Param("id"), "deletion_acknowledged_at": at})
}

// consentReceiptPDF answers with the latest receipt printed: Vietnamese
// and English, a QR code carrying its signed summary, and kho's PAdES
// signature.
func (s *Server) consentReceiptPDF(c *gin.Context) {
	if s.cfg.SignReceiptPDF == nil {
		errorf(c, kho.EUNAVAILABLE, "printed receipts are not configured")
		return
	}
	ctx := c.Request.Context()
	pr, err := s.cfg.Consents.PrintableReceipt(ctx, principal(c), c.Param("id"))
	if err != nil {
		writeError(c, err)
		return
	}
	pdf, err := consent.RenderPDF(pr)
	if err == nil {
		pdf, err = s.cfg.SignReceiptPDF(ctx, pdf)
	}
	if err != nil {
		writeError(c, err)
		return
	}
	c.Header("Content-Disposition", `attachment; filename="consent-receipt-`+pr.Receipt.Consent.ID+`.pdf"`)
	c.Data(http.StatusOK, "application/pdf", pdf)
}

// consentStatus pauses, resumes or revokes; a revocation with ?preview=true
// only says what it would stop.
func (s *Server) consentStatus(status string) gin.HandlerFunc {
	return func(c *gin.Context) {
		var body struct {
			Reason string `json:"reason"`
		}
		if c.Request.ContentLength != 0 {
			if err := decodeJSON(c, &body); err != nil {
				writeError(c, err)
				return
			}
		}
		preview := c.Query("preview") == "true"
		cs, w, err := s.cfg.Consents.SetStatus(c.Request.Context(), principal(c), c.Param("id"), status, body.Reason, preview)
		if err != nil {
			writeError(c, err)
			return
		}
		if preview {
			c.JSON(http.StatusOK, gin.H{"preview": true, "would_stop": w})
			return
		}
		out := gin.H{"consent": cs}
		if w != nil {
			out["stopped"] = w
		}
		c.JSON(http.StatusOK, out)
	}
}

// keysFunc adapts a JWKS source.
type keysFunc = func(ctx context.Context) (jwk.Set, error)
