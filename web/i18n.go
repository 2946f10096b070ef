package web

import (
	"fmt"
	"time"
)

// messages are the portal's words, Vietnamese first. A key missing from
// English falls back to Vietnamese; one missing from both shows itself, so
// a test sees it.
var messages = map[string]map[string]string{
	"vi": {
		"site":              "Kho dữ liệu điện tử",
		"skip":              "Bỏ qua, đến nội dung chính",
		"nav":               "Điều hướng chính",
		"nav.home":          "Trang chủ",
		"nav.documents":     "Giấy tờ của tôi",
		"nav.requests":      "Yêu cầu đồng ý",
		"nav.consents":      "Sự đồng ý đã cho",
		"nav.log":           "Nhật ký truy cập",
		"lang.other":        "English",
		"lang.label":        "Chuyển sang tiếng Anh",
		"signin":            "Đăng nhập",
		"signout":           "Đăng xuất",
		"signed.as":         "Đang đăng nhập",
		"acting.for":        "Đang xem kho của",
		"acting.self":       "chính tôi",
		"acting.switch":     "Đổi",
		"acting.ward":       "người được giám hộ",
		"acting.business":   "doanh nghiệp",
		"home.intro":        "Kho lưu giấy tờ của bạn, đã được cơ quan nhà nước số hoá hoặc cấp. Khi bạn làm thủ tục khác, cơ quan giải quyết lấy giấy tờ từ đây, theo sự đồng ý của bạn hoặc căn cứ pháp luật, thay vì yêu cầu bạn nộp lại. Mọi lần truy cập đều được ghi lại để bạn xem.",
		"home.signin":       "Đăng nhập bằng tài khoản định danh để xem giấy tờ, yêu cầu đồng ý và nhật ký truy cập của bạn.",
		"home.pending":      "Bạn có %d yêu cầu đồng ý đang chờ trả lời.",
		"docs.title":        "Giấy tờ của tôi",
		"docs.none":         "Kho chưa có giấy tờ nào.",
		"docs.type":         "Loại giấy tờ",
		"docs.issuer":       "Nơi cấp",
		"docs.issued":       "Ngày cấp",
		"docs.valid":        "Hiệu lực đến",
		"docs.status":       "Tình trạng",
		"docs.download":     "Tải về",
		"docs.selfdecl":     "Tự khai",
		"status.valid":      "Còn hiệu lực",
		"status.expired":    "Hết hạn",
		"status.revoked":    "Đã thu hồi",
		"status.superseded": "Đã có bản mới",
		"status.erased":     "Đã xoá",
		"req.title":         "Yêu cầu đồng ý",
		"req.none":          "Không có yêu cầu nào đang chờ.",
		"req.sentence":      "%s đề nghị được sử dụng %s của bạn để giải quyết thủ tục %s.",
		"req.purpose":       "Mục đích",
		"req.until":         "Đến ngày",
		"req.uses":          "Số lần sử dụng",
		"req.uses.once":     "một lần",
		"req.uses.n":        "tối đa %d lần",
		"req.uses.any":      "không giới hạn trong thời hạn",
		"req.life":          "Cơ quan phải xoá bản sao sau",
		"req.life.days":     "%d ngày",
		"req.approve":       "Đồng ý",
		"req.deny":          "Từ chối",
		"req.done.approved": "Bạn đã đồng ý. Cơ quan có thể lấy giấy tờ theo đúng phạm vi trên.",
		"req.done.denied":   "Bạn đã từ chối yêu cầu.",
		"req.done.pending":  "Đã ghi nhận. Yêu cầu còn chờ người khác đồng ý.",
		"log.title":         "Nhật ký truy cập",
		"log.none":          "Chưa có lần truy cập nào.",
		"log.fetch.consent": "%s đã lấy %s của bạn lúc %s cho thủ tục %s, theo sự đồng ý số %s.",
		"log.fetch.basis":   "%s đã lấy %s của bạn lúc %s cho thủ tục %s, theo căn cứ pháp lý %s.",
		"log.refused":       "%s đã bị từ chối khi muốn lấy %s của bạn lúc %s (lý do: %s).",
		"log.deposit":       "%s đã lưu %s vào kho của bạn lúc %s.",
		"log.other":         "%s: %s lúc %s.",
		"log.requested":     "%s đã gửi bạn yêu cầu đồng ý lúc %s, cho thủ tục %s.",
		"log.availability":  "%s đã xem kho của bạn có sẵn giấy tờ nào cho thủ tục %s, lúc %s.",
		"log.resolved":      "%s đã tra cứu kho của bạn lúc %s.",
		"log.you":           "Bạn",
		"log.basis.badge":   "Căn cứ pháp lý",
		"a.document":        "một giấy tờ",
		"err.title":         "Có lỗi",
		"err.404":           "Không tìm thấy trang hoặc giấy tờ này.",
		"err.403":           "Bạn không có quyền xem trang này.",
		"err.400":           "Yêu cầu không hợp lệ.",
		"err.503":           "Hệ thống tạm thời gián đoạn. Vui lòng thử lại sau ít phút.",
		"err.500":           "Đã có lỗi ngoài ý muốn.",
		"err.csrf":          "Biểu mẫu đã hết hạn hoặc không đến từ trang này. Vui lòng tải lại trang và thử lại.",
		"err.id":            "Mã yêu cầu",
		"err.back":          "Về trang chủ",
		"footer":            "Mọi lần truy cập kho của bạn đều được ghi lại, và bạn xem được tại Nhật ký truy cập.",
	},
	"en": {
		"site":              "Electronic data warehouse",
		"skip":              "Skip to the main content",
		"nav":               "Main navigation",
		"nav.home":          "Home",
		"nav.documents":     "My documents",
		"nav.requests":      "Consent requests",
		"nav.consents":      "Consents given",
		"nav.log":           "Access log",
		"lang.other":        "Tiếng Việt",
		"lang.label":        "Switch to Vietnamese",
		"signin":            "Sign in",
		"signout":           "Sign out",
		"signed.as":         "Signed in as",
		"acting.for":        "Showing the store of",
		"acting.self":       "myself",
		"acting.switch":     "Switch",
		"acting.ward":       "ward",
		"acting.business":   "business",
		"home.intro":        "Your store of the documents state agencies digitized or issued for you. When you start another procedure, the agency handling it takes them from here, with your consent or on a legal basis, instead of asking you for them again. Every access is recorded for you to see.",
		"home.signin":       "Sign in with your identity account to see your documents, consent requests and access log.",
		"home.pending":      "You have %d consent requests waiting for an answer.",
		"docs.title":        "My documents",
		"docs.none":         "The store holds no documents yet.",
		"docs.type":         "Document",
		"docs.issuer":       "Issued by",
		"docs.issued":       "Issued on",
		"docs.valid":        "Valid until",
		"docs.status":       "Status",
		"docs.download":     "Download",
		"docs.selfdecl":     "Self-declared",
		"status.valid":      "Valid",
		"status.expired":    "Expired",
		"status.revoked":    "Revoked",
		"status.superseded": "Superseded",
		"status.erased":     "Erased",
		"req.title":         "Consent requests",
		"req.none":          "No request is waiting.",
		"req.sentence":      "%s asks to use your %s to handle the procedure %s.",
		"req.purpose":       "Purpose",
		"req.until":         "Until",
		"req.uses":          "Uses",
		"req.uses.once":     "once",
		"req.uses.n":        "at most %d times",
		"req.uses.any":      "any number of times until then",
		"req.life":          "The agency must delete its copy after",
		"req.life.days":     "%d days",
		"req.approve":       "Approve",
		"req.deny":          "Deny",
		"req.done.approved": "You approved. The agency may take the documents within the scope above.",
		"req.done.denied":   "You denied the request.",
		"req.done.pending":  "Recorded. The request still waits for another party's approval.",
		"log.title":         "Access log",
		"log.none":          "Nobody has accessed your store yet.",
		"log.fetch.consent": "%s took your %s at %s for the procedure %s, under consent %s.",
		"log.fetch.basis":   "%s took your %s at %s for the procedure %s, on the legal basis %s.",
		"log.refused":       "%s was refused your %s at %s (reason: %s).",
		"log.deposit":       "%s put %s in your store at %s.",
		"log.other":         "%s: %s at %s.",
		"log.requested":     "%s asked for your consent at %s, for the procedure %s.",
		"log.availability":  "%s checked which documents your store holds for the procedure %s, at %s.",
		"log.resolved":      "%s looked up your store at %s.",
		"log.you":           "You",
		"log.basis.badge":   "Legal basis",
		"a.document":        "a document",
		"err.title":         "Something went wrong",
		"err.404":           "This page or document was not found.",
		"err.403":           "You may not see this page.",
		"err.400":           "The request is not valid.",
		"err.503":           "The service is briefly unavailable. Please try again in a few minutes.",
		"err.500":           "An unexpected error happened.",
		"err.csrf":          "The form has expired or did not come from this site. Reload the page and try again.",
		"err.id":            "Request id",
		"err.back":          "Back to the home page",
		"footer":            "Every access to your store is recorded, and you can read it in the Access log.",
	},
}

// tr translates key into lang, formatting args into it.
func tr(lang, key string, args ...any) string {
	m, ok := messages[lang][key]
	if !ok {
		if m, ok = messages["vi"][key]; !ok {
			m = key
		}
	}
	if len(args) > 0 {
		return fmt.Sprintf(m, args...)
	}
	return m
}

// vnZone is Vietnam's time (UTC+7, no daylight saving).
var vnZone = time.FixedZone("ICT", 7*3600)

// dateOf formats a date the way lang writes it.
func dateOf(lang string, t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	if lang == "en" {
		return t.Format("2 Jan 2006")
	}
	return t.Format("02/01/2006")
}

// timeOf formats a moment in Vietnam's time, the way lang writes it.
func timeOf(lang string, t time.Time) string {
	t = t.In(vnZone)
	if lang == "en" {
		return t.Format("15:04, 2 Jan 2006")
	}
	return t.Format("15:04 ngày 02/01/2006")
}
