package web

import (
	"net/http"
	"time"

	"kho"
	"kho/policies"
)

// holdView is a legal hold as the owner reads it.
type holdView struct {
	Agency, LegalBasis string
	Until              time.Time
}

// erasure explains what erasing the store does, with the legal holds that
// would block it, and erases it once the person confirms.
func (pt *Portal) erasure(w http.ResponseWriter, r *http.Request, v *view) error {
	ctx := r.Context()
	p := v.Session.Principal
	holds, err := pt.cfg.Documents.ListHolds(ctx, p, storeOf(v))
	if err != nil {
		return err
	}
	var active []holdView
	for _, h := range holds {
		if h.ReleasedAt == nil && h.Until.After(time.Now()) {
			active = append(active, holdView{Agency: pt.name(ctx, v.Lang, "agency", string(h.Agency)), LegalBasis: h.LegalBasis, Until: h.Until})
		}
	}
	data := map[string]any{"Holds": active}
	if r.Method == http.MethodPost {
		if r.PostForm.Get("confirm") != "yes" {
			return kho.Errorf(kho.EINVALID, "tick the box to confirm the erasure")
		}
		st, err := pt.cfg.Documents.StoreFor(ctx, p, policies.EraseStore, storeOf(v))
		if err != nil {
			return err
		}
		n, err := pt.cfg.Documents.Erase(ctx, p, st.Handle)
		if err != nil {
			return err
		}
		data["Erased"] = n
	}
	v.Title = v.T("erase.title")
	v.Data = data
	return pt.render(w, http.StatusOK, "erasure", v)
}
