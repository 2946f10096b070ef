package api

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"kho"
	"kho/audit"
	"kho/oauth"
)

// maxTokenRequest bounds a token request's form.
const maxTokenRequest = 16 << 10

// token is the OAuth 2.0 token endpoint for agencies' systems: client
// credentials, authenticated by a private_key_jwt client assertion. Its
// answers follow RFC 6749 (JSON with "error"), as OAuth clients expect,
// never cached; failed client authentications count with failed bearer
// tokens against the caller's address.
func (s *Server) token(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.Header("Pragma", "no-cache")
	if ct := c.ContentType(); ct != "application/x-www-form-urlencoded" {
		c.JSON(http.StatusBadRequest, &oauth.Error{Code: "invalid_request", Description: "the token request must be application/x-www-form-urlencoded"})
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxTokenRequest)
	if err := c.Request.ParseForm(); err != nil {
		c.JSON(http.StatusBadRequest, &oauth.Error{Code: "invalid_request", Description: "the token request's form cannot be read"})
		return
	}
	f := c.Request.PostForm
	for k, v := range f {
		if len(v) != 1 {
			c.JSON(http.StatusBadRequest, &oauth.Error{Code: "invalid_request", Description: "parameter " + k + " is given more than once"})
			return
		}
	}
	tok, agency, err := s.cfg.Tokens.Issue(c.Request.Context(), oauth.Request{GrantType: f.Get("grant_type"), AssertionType: f.Get("client_assertion_type"),
		Assertion: f.Get("client_assertion"), ClientID: f.Get("client_id"), Scope: f.Get("scope")})
	if err != nil {
		status, body := oauth.StatusOf(err)
		if body.Code == "invalid_client" && authFailed(c, s.cfg.Audit, s.failures, body.Description) {
			return
		}
		if status == http.StatusUnauthorized {
			c.Header("WWW-Authenticate", `Bearer error="invalid_client"`)
		}
		if status >= 500 {
			_ = c.Error(err)
		}
		c.JSON(status, body)
		return
	}
	// The issuance is on the record, like a login.
	who := kho.Principal{Kind: kho.PrincipalAgency, Agency: agency, Issuer: "kho token endpoint", TokenID: tok.ID}
	if err := s.cfg.Audit.Record(c.Request.Context(), audit.Event{Action: audit.TokenIssued, Outcome: audit.Success, Actor: who,
		Details: map[string]any{"scope": tok.Scope, "expires_in": tok.ExpiresIn}}); err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, tok)
}
