package policies

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	cedar "github.com/cedar-policy/cedar-go"
)

//go:embed reuse/*.cedar
var reuseFiles embed.FS

// Reuse actions.
const (
	ActionList  = "list"  // see which documents of a type exist
	ActionFetch = "fetch" // read a document
)

// Engine evaluates the reuse policy.
type Engine struct {
	set     *cedar.PolicySet
	info    map[cedar.PolicyID]PolicyInfo
	sources []string
}

// PolicyInfo is what explain says about a policy.
type PolicyInfo struct {
	ID         string `json:"id"`
	Effect     string `json:"effect"`
	Reason     string `json:"reason"`
	LegalBasis string `json:"legal_basis,omitempty"`
}

// NewEngine parses and checks the reuse policy files (name → Cedar text).
// Every policy must carry an @id and a @reason, so explanations never say
// "policy3".
func NewEngine(files map[string][]byte) (*Engine, error) {
	e := &Engine{set: cedar.NewPolicySet(), info: map[cedar.PolicyID]PolicyInfo{}}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		ps, err := cedar.NewPolicySetFromBytes(name, files[name])
		if err != nil {
			return nil, fmt.Errorf("reuse policy %s: %w", name, err)
		}
		for _, p := range ps.All() {
			ann := p.Annotations()
			id, reason := string(ann["id"]), string(ann["reason"])
			if id == "" || reason == "" {
				return nil, fmt.Errorf("reuse policy %s: every policy needs @id and @reason (at line %d)", name, p.Position().Line)
			}
			pid := cedar.PolicyID(id)
			if _, dup := e.info[pid]; dup {
				return nil, fmt.Errorf("reuse policy %s: policy id %q used twice", name, id)
			}
			effect := "permit"
			if p.Effect() == cedar.Forbid {
				effect = "forbid"
			}
			e.set.Add(pid, p)
			e.info[pid] = PolicyInfo{ID: id, Effect: effect, Reason: reason, LegalBasis: string(ann["legal_basis"])}
		}
		e.sources = append(e.sources, name)
	}
	if len(e.info) == 0 {
		return nil, fmt.Errorf("reuse policy: no policies")
	}
	return e, nil
}

// DefaultEngine loads the reuse policy embedded in kho.
func DefaultEngine() (*Engine, error) {
	files := map[string][]byte{}
	err := fs.WalkDir(reuseFiles, "reuse", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := reuseFiles.ReadFile(path)
		files[path] = b
		return err
	})
	if err != nil {
		return nil, err
	}
	return NewEngine(files)
}

// Policies lists the loaded policies.
func (e *Engine) Policies() []PolicyInfo {
	out := make([]PolicyInfo, 0, len(e.info))
	for _, i := range e.info {
		out = append(out, i)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}

// ReuseQuery is one question to the policy.
type ReuseQuery struct {
	Agency       string     // agency code
	AgencyKind   string     // its kind in the catalogue
	Action       string     // ActionList or ActionFetch
	Procedure    *Procedure // the procedure the agency is handling
	DocumentID   string     // for a fetch; empty for list
	DocumentType string
	Consent      bool // an active consent covers agency, procedure and type
}

// ReuseAnswer is the policy's answer and why.
type ReuseAnswer struct {
	Allowed    bool         `json:"allowed"`
	Determined []PolicyInfo `json:"determined_by"` // the permits (or forbids) that decided
	LegalBasis string       `json:"legal_basis,omitempty"`
	// NeedsConsent is set on a refusal that consent would turn into a
	// permit (the policy admits the reuse, but only with consent).
	NeedsConsent bool     `json:"needs_consent,omitempty"`
	Errors       []string `json:"errors,omitempty"`
}

func (e *Engine) evaluate(q ReuseQuery, consent bool) (cedar.Decision, cedar.Diagnostic) {
	docID := q.DocumentID
	if docID == "" {
		docID = "type:" + q.DocumentType
	}
	agency := cedar.NewEntityUID("Agency", cedar.String(q.Agency))
	proc := cedar.NewEntityUID("Procedure", cedar.String(q.Procedure.Code))
	doc := cedar.NewEntityUID("Document", cedar.String(docID))
	set := func(ss []string) cedar.Set {
		vs := make([]cedar.Value, len(ss))
		for i, s := range ss {
			vs[i] = cedar.String(s)
		}
		return cedar.NewSet(vs...)
	}
	entities := cedar.EntityMap{
		agency: {UID: agency, Attributes: cedar.NewRecord(cedar.RecordMap{"kind": cedar.String(q.AgencyKind)})},
		proc: {UID: proc, Attributes: cedar.NewRecord(cedar.RecordMap{
			"handlers": set(q.Procedure.HandlerKinds), "types": set(q.Procedure.Types()),
		})},
		doc: {UID: doc, Attributes: cedar.NewRecord(cedar.RecordMap{"type": cedar.String(q.DocumentType)})},
	}
	return e.set.IsAuthorized(entities, cedar.Request{
		Principal: agency,
		Action:    cedar.NewEntityUID("Action", cedar.String(q.Action)),
		Resource:  doc,
		Context:   cedar.NewRecord(cedar.RecordMap{"procedure": proc, "consent": cedar.Boolean(consent)}),
	})
}

// Decide evaluates q. A fetch allowed only by a @legal_basis permit reports
// that basis; a refusal that consent would lift says so.
func (e *Engine) Decide(q ReuseQuery) ReuseAnswer {
	var a ReuseAnswer
	if q.Procedure == nil {
		a.Errors = []string{"no procedure"}
		return a
	}
	dec, diag := e.evaluate(q, q.Consent)
	for _, r := range diag.Reasons {
		a.Determined = append(a.Determined, e.info[r.PolicyID])
	}
	for _, er := range diag.Errors {
		a.Errors = append(a.Errors, er.String())
	}
	a.Allowed = dec == cedar.Allow
	if a.Allowed {
		// Prefer consent over a legal basis when both admit: the subject's
		// own choice is the stronger ground, and it is what gets counted.
		consentPermit := false
		for _, d := range a.Determined {
			if d.LegalBasis == "" {
				consentPermit = true
			}
		}
		if !consentPermit || !q.Consent {
			for _, d := range a.Determined {
				if d.LegalBasis != "" {
					a.LegalBasis = d.LegalBasis
					break
				}
			}
		}
		return a
	}
	if !q.Consent && q.Action == ActionFetch {
		if d, _ := e.evaluate(q, true); d == cedar.Allow {
			a.NeedsConsent = true
		}
	}
	return a
}

// Explain renders an answer for people: the decision and the policies behind
// it, each with its reason and legal basis.
func (a ReuseAnswer) Explain(q ReuseQuery) string {
	var b strings.Builder
	verdict := "DENY"
	if a.Allowed {
		verdict = "ALLOW"
	}
	proc := ""
	if q.Procedure != nil {
		proc = q.Procedure.Code
	}
	fmt.Fprintf(&b, "%s %s of %s by agency %s (%s) for procedure %s, consent=%t\n", verdict, q.Action, q.DocumentType, q.Agency, q.AgencyKind, proc, q.Consent)
	for _, d := range a.Determined {
		fmt.Fprintf(&b, "  %s %s: %s\n", d.Effect, d.ID, d.Reason)
		if d.LegalBasis != "" {
			fmt.Fprintf(&b, "    legal basis: %s\n", d.LegalBasis)
		}
	}
	switch {
	case a.Allowed && a.LegalBasis != "":
		fmt.Fprintf(&b, "  admitted without consent on a legal basis\n")
	case a.Allowed:
		fmt.Fprintf(&b, "  admitted under the subject's consent\n")
	case len(a.Determined) > 0:
		fmt.Fprintf(&b, "  refused by the policies above\n")
	case a.NeedsConsent:
		fmt.Fprintf(&b, "  refused: the policy admits this only with the subject's consent, and none is active\n")
	default:
		fmt.Fprintf(&b, "  refused: no policy admits this agency, procedure and document type\n")
	}
	for _, e := range a.Errors {
		fmt.Fprintf(&b, "  error: %s\n", e)
	}
	return b.String()
}
