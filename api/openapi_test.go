package api_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"kho/api"
)

// Every request the API tests send and every answer they get goes through
// contract, which checks them against the OpenAPI document: an answer must
// have a documented status, media type and body; a request kho accepted
// (2xx) must be one the document allows. What does not match is reported
// when the package's tests end, and fails the run.
var contract = newContractChecker()

func TestMain(m *testing.M) {
	// The tests' requests go through http.DefaultClient (request, and the
	// Go client where a test gives it that); the servers' own clients
	// (MinIO's, Vault's) keep http.DefaultTransport.
	http.DefaultClient.Transport = contract
	code := m.Run()
	if v := contract.report(); v != "" {
		fmt.Fprintf(os.Stderr, "answers or accepted requests that the OpenAPI document does not allow:\n%s", v)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

type contractChecker struct {
	next   http.RoundTripper
	doc    *openapi3.T
	router routers.Router
	err    error

	mu         sync.Mutex
	violations map[string]int
	checked    int
}

func newContractChecker() *contractChecker {
	// Bodies that are not JSON are checked for their media type, and read
	// as strings where the document gives them a schema.
	for _, mt := range []string{"application/jose", "application/vnd.kho.jwe-stream", "application/pdf", "application/pkix-cert",
		"application/pkix-crl", "application/jwt", "application/x-ndjson", "text/plain", "application/octet-stream", "image/jpeg", "image/png"} {
		openapi3filter.RegisterBodyDecoder(mt, openapi3filter.FileBodyDecoder)
	}
	c := &contractChecker{next: http.DefaultTransport, violations: map[string]int{}}
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err == nil {
		err = doc.Validate(context.Background())
	}
	if err == nil {
		doc.Servers = nil // the test servers listen anywhere
		c.router, err = gorillamux.NewRouter(doc)
	}
	c.doc, c.err = doc, err
	return c
}

// bodyLimit bounds what is held to validate; longer bodies pass through
// with their headers and status checked only.
const bodyLimit = 4 << 20

var uuidish = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

func (c *contractChecker) RoundTrip(req *http.Request) (*http.Response, error) {
	if c.err != nil {
		return nil, fmt.Errorf("the OpenAPI document does not load: %w", c.err)
	}
	var reqBody []byte
	reqBodyKept := req.Body == nil || req.Body == http.NoBody
	if !reqBodyKept && req.ContentLength >= 0 && req.ContentLength <= bodyLimit {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		reqBody, reqBodyKept = b, true
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	resp, err := c.next.RoundTrip(req)
	if err != nil || resp.Header.Get("X-Request-Id") == "" {
		// Not an answer of kho's (a webhook receiver, a proxy in a test).
		return resp, err
	}
	respBody, kept, err := readUpTo(resp.Body, bodyLimit)
	if err != nil {
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(respBody), errReader{err}))
		return resp, nil
	}
	if kept {
		resp.Body = io.NopCloser(bytes.NewReader(respBody))
	} else {
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(respBody), resp.Body), resp.Body}
	}
	c.check(req, reqBody, reqBodyKept, resp, respBody, kept)
	return resp, nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func readUpTo(r io.Reader, n int64) ([]byte, bool, error) {
	b, err := io.ReadAll(io.LimitReader(r, n+1))
	if err != nil {
		return b, false, err
	}
	return b, int64(len(b)) <= n, nil
}

func (c *contractChecker) check(req *http.Request, reqBody []byte, reqKept bool, resp *http.Response, respBody []byte, respKept bool) {
	ctx := context.Background()
	r := req.Clone(ctx)
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	where := req.Method + " " + uuidish.ReplaceAllString(req.URL.Path, "{id}")
	route, params, err := c.router.FindRoute(r)
	if err != nil {
		// An unknown route must have been answered as one.
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			c.violation(where, fmt.Sprintf("%d from a route the document does not list", resp.StatusCode))
		}
		return
	}
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, ExcludeRequestBody: !reqKept, MultiError: false}}
	if resp.StatusCode/100 == 2 {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			c.violation(where, "accepted request: "+firstLine(err.Error()))
		}
	}
	if !respKept {
		// Too long to hold: its media type is checked here.
		ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
		if ref := route.Operation.Responses.Status(resp.StatusCode); ref == nil || ref.Value == nil || ref.Value.Content.Get(ct) == nil {
			c.violation(where, fmt.Sprintf("answer %d: media type %q is not documented", resp.StatusCode, ct))
		}
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, ExcludeResponseBody: !respKept}}
	out.SetBodyBytes(respBody)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		c.violation(where, fmt.Sprintf("answer %d: %s", resp.StatusCode, firstLine(err.Error())))
	}
	c.mu.Lock()
	c.checked++
	c.mu.Unlock()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func (c *contractChecker) violation(where, what string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.violations[where+": "+what]++
}

func (c *contractChecker) report() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var lines []string
	for v, n := range c.violations {
		lines = append(lines, fmt.Sprintf("  %s (%d times)\n", v, n))
	}
	sort.Strings(lines)
	return strings.Join(lines, "")
}

// The document is valid OpenAPI 3.1, and lists exactly the routes khod
// registers: none undocumented, none documented that does not exist.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	if contract.err != nil {
		t.Fatalf("the OpenAPI document: %v", contract.err)
	}
	if !contract.doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi %q, want 3.1", contract.doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, item := range contract.doc.Paths.Map() {
		for method, op := range item.Operations() {
			documented[method+" "+path] = true
			if op.OperationID == "" || op.Summary == "" {
				t.Errorf("%s %s has no operationId or summary", method, path)
			}
			if len(op.Responses.Map()) == 0 {
				t.Errorf("%s %s documents no answer", method, path)
			}
		}
	}
	d := newDocServer(t, 0)
	param := regexp.MustCompile(`:([a-z_]+)`)
	for _, r := range d.srv.Routes() {
		r = param.ReplaceAllString(r, "{$1}")
		if !documented[r] {
			t.Errorf("route %s is registered but not in the OpenAPI document", r)
		}
		delete(documented, r)
	}
	for r := range documented {
		t.Errorf("route %s is in the OpenAPI document but not registered", r)
	}
	// Served as it is kept, and the exchange went through the contract.
	contract.mu.Lock()
	before := contract.checked
	contract.mu.Unlock()
	resp, b := request(t, "GET", d.url+"/openapi.json", "", "", nil, nil)
	if resp.StatusCode != 200 || !bytes.Equal(b, api.OpenAPI) || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("/openapi.json: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	contract.mu.Lock()
	defer contract.mu.Unlock()
	if contract.checked != before+1 {
		t.Fatal("the exchange was not checked against the OpenAPI document")
	}
}
