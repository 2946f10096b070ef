package kho

import (
	"encoding/json"
	"errors"
	"fmt"
)

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// jsonErrorText describes a decoding error without echoing the input.
func jsonErrorText(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %s has the wrong type", te.Field)
	default:
		return err.Error()
	}
}
