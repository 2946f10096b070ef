package api

import (
	_ "embed"
	"net/http"

	"github.com/gin-gonic/gin"
)

// OpenAPI is the API's description (OpenAPI 3.1), served at /openapi.json.
// A test fails when a registered route is missing from it or it lists one
// that is not registered, and every request and response of the API tests
// is validated against it.
//
//go:embed openapi.json
var OpenAPI []byte

func (s *Server) openapi(c *gin.Context) {
	c.Header("Cache-Control", "public, max-age=300")
	c.Data(http.StatusOK, "application/json", OpenAPI)
}
