package kho

import (
	"bytes"
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// FieldError is one field of a request that is wrong: where (a JSON pointer
// into the body, RFC 6901) and what was expected. The API lists them in
// problem+json's "errors" member.
type FieldError struct {
	Pointer string `json:"pointer"`
	Detail  string `json:"detail"`
}

// FieldErrorf returns an EINVALID error about one field of the body.
func FieldErrorf(field, format string, args ...any) *Error {
	e := Errorf(EINVALID, format, args...)
	e.Fields = []FieldError{{Pointer: "/" + field, Detail: e.Message}}
	return e
}

// ErrorFields returns the field errors of the outermost *Error that has
// some.
func ErrorFields(err error) []FieldError {
	for err != nil {
		var e *Error
		if !errorsAs(err, &e) {
			return nil
		}
		if len(e.Fields) > 0 {
			return e.Fields
		}
		err = e.Err
	}
	return nil
}

// vietnam is the time zone a calendar date means when a moment is expected.
var vietnam = time.FixedZone("ICT", 7*3600)

// DecodeObject decodes a JSON object into the struct v strictly, and says
// precisely what is wrong: every unknown field, every field of the wrong
// type or form, every missing field tagged `required:"true"`, each as a
// FieldError naming it. A field given twice is refused (decoders disagree
// on which one counts). Where a moment (time.Time) is expected, a calendar
// date YYYY-MM-DD is also accepted and means until the end of that day in
// Vietnam (the next midnight, UTC+7), as bounds are exclusive.
func DecodeObject(b []byte, v any) error {
	if !utf8.Valid(b) {
		return &Error{Code: EINVALID, Message: "the body is not valid UTF-8", Fields: []FieldError{{Pointer: "", Detail: "UTF-8 text"}}}
	}
	if !json.Valid(b) {
		return &Error{Code: EINVALID, Message: "the body is not one well-formed JSON object",
			Fields: []FieldError{{Pointer: "", Detail: "a JSON object"}}}
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&raw); err != nil || raw == nil {
		return &Error{Code: EINVALID, Message: "the body must be a JSON object",
			Fields: []FieldError{{Pointer: "", Detail: "a JSON object"}}}
	}
	if dec.More() {
		return &Error{Code: EINVALID, Message: "the body has content after the JSON object",
			Fields: []FieldError{{Pointer: "", Detail: "one JSON object"}}}
	}
	if name, dup := duplicateKey(b); dup {
		e := Errorf(EINVALID, "a field is given twice in %q", truncate(name, 64))
		e.Fields = []FieldError{{Pointer: "/" + pointerEscape(truncate(name, 64)), Detail: "has a field given twice"}}
		return e
	}
	fields := map[string]reflect.Value{}
	required := map[string]bool{}
	collectFields(reflect.ValueOf(v).Elem(), fields, required)
	var errs []FieldError
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f, ok := fields[k]
		if !ok {
			errs = append(errs, FieldError{Pointer: "/" + pointerEscape(truncate(k, 64)), Detail: "unknown field"})
			continue
		}
		val := raw[k]
		// PostgreSQL keeps no NUL in text, and no kho field needs one.
		if bytes.Contains(bytes.ToLower(val), []byte(`\u0000`)) {
			errs = append(errs, FieldError{Pointer: "/" + pointerEscape(k), Detail: "contains a NUL character"})
			continue
		}
		if isMoment(f.Type()) {
			var far bool
			if val, far = dateAsMoment(val); far {
				errs = append(errs, FieldError{Pointer: "/" + pointerEscape(k), Detail: "is a date too far in the future"})
				continue
			}
		}
		if err := json.Unmarshal(val, f.Addr().Interface()); err != nil {
			detail := "must be " + expectation(f.Type())
			var ke *Error
			if errorsAs(err, &ke) && ke.Message != "" {
				detail = ke.Message
			}
			errs = append(errs, FieldError{Pointer: "/" + pointerEscape(k), Detail: detail})
		}
	}
	for name := range required {
		if v, ok := raw[name]; !ok || string(v) == "null" || string(v) == `""` {
			errs = append(errs, FieldError{Pointer: "/" + name, Detail: "is required"})
		}
	}
	if len(errs) == 0 {
		return nil
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Pointer < errs[j].Pointer })
	msg := make([]string, len(errs))
	for i, e := range errs {
		msg[i] = strings.TrimPrefix(e.Pointer, "/") + " " + e.Detail
	}
	return &Error{Code: EINVALID, Message: "the body has errors: " + strings.Join(msg, "; "), Fields: errs}
}

// collectFields maps each JSON field name of struct v (embedded structs
// included) to its value.
func collectFields(v reflect.Value, into map[string]reflect.Value, required map[string]bool) {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		if sf.Anonymous && sf.Type.Kind() == reflect.Struct {
			collectFields(v.Field(i), into, required)
			continue
		}
		if !sf.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		into[name] = v.Field(i)
		if sf.Tag.Get("required") == "true" {
			required[name] = true
		}
	}
}

var timeType = reflect.TypeFor[time.Time]()

func isMoment(t reflect.Type) bool {
	return t == timeType || (t.Kind() == reflect.Pointer && t.Elem() == timeType)
}

// dateAsMoment turns "YYYY-MM-DD" into the next midnight in Vietnam, RFC
// 3339; anything else is left for the decoder to judge. far reports a date
// past year 9000, which no bound of kho's needs.
func dateAsMoment(raw json.RawMessage) (out json.RawMessage, far bool) {
	var s string
	if json.Unmarshal(raw, &s) != nil || len(s) != len(time.DateOnly) {
		return raw, false
	}
	d, err := time.ParseInLocation(time.DateOnly, s, vietnam)
	if err != nil {
		return raw, false
	}
	if d.Year() > 9000 {
		return raw, true
	}
	b, _ := json.Marshal(d.AddDate(0, 0, 1).Format(time.RFC3339))
	return b, false
}

// expectation says in words what a field of type t takes.
func expectation(t reflect.Type) string {
	switch {
	case isMoment(t):
		return "a time in RFC 3339 (2026-12-01T17:00:00+07:00) or a date (2026-12-01, meaning until the end of that day)"
	case t == reflect.TypeFor[Date]() || t == reflect.TypeFor[*Date]():
		return "a date YYYY-MM-DD"
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		return "an array of " + strings.TrimPrefix(expectation(t.Elem()), "a ") + "s"
	}
	return "a value of the right type"
}

func pointerEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// DuplicateKey reports whether a JSON text has an object with a key given
// twice, and the top-level field it is in.
func DuplicateKey(b []byte) (string, bool) { return duplicateKey(b) }

// duplicateKey reports, for the first object key that appears twice in the
// same object of a JSON text (at any depth), the top-level field it is in.
func duplicateKey(b []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	type frame struct {
		object bool
		keys   map[string]bool
		key    bool // the next string token is a key
	}
	var stack []*frame
	var field string // the top-level field being read
	top := func() *frame {
		if len(stack) == 0 {
			return nil
		}
		return stack[len(stack)-1]
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false // malformed JSON is the decoder's to report
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if f := top(); f != nil && f.object {
					f.key = true
				}
				stack = append(stack, &frame{object: d == '{', keys: map[string]bool{}, key: d == '{'})
			default:
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					return "", false
				}
			}
			continue
		}
		f := top()
		if f == nil || !f.object {
			continue
		}
		if s, ok := tok.(string); ok && f.key {
			if len(stack) == 1 {
				field = s
			}
			if f.keys[s] {
				return field, true
			}
			f.keys[s], f.key = true, false
			continue
		}
		f.key = true
	}
}
