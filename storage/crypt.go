package storage

import (
	"context"
	"fmt"
	"strconv"

	"filippo.io/age"

	"kho"
)

// Ciphertext is the age format (filippo.io/age): a header holding one
// recipient stanza, then the payload in 64 KiB chunks, each authenticated
// with ChaCha20-Poly1305 under a key derived from a fresh 16-byte file key.
//
// kho's stanza has type "kho-transit" and arguments
//
//	[1] format version "1"
//	[2] document id
//	[3] subject handle
//	[4] Transit key version used at deposit
//
// and its body is the file key wrapped by the subject's Transit key, with the
// binding "kho/file-key/v1/<document id>/<subject handle>" as the derivation
// context: the wrapped key unwraps for that document only. age's header MAC,
// keyed by the file key, covers the arguments, so they cannot be edited.
//
// PostgreSQL keeps the authoritative wrapped key. Rewrapping after a key
// rotation updates that copy only and never touches the ciphertext; once a
// subject is rewrapped, the old key versions are retired in Vault and the
// stanza body (an old-version wrap) can no longer be unwrapped.
const stanzaType = "kho-transit"

// binding is the context a document's file key is wrapped under.
func binding(id kho.DocumentID, h kho.SubjectHandle) []byte {
	return []byte("kho/file-key/v1/" + string(id) + "/" + string(h))
}

// transitRecipient wraps a document's file key with the subject's key.
type transitRecipient struct {
	ctx     context.Context
	keys    kho.SubjectKeys
	subject kho.SubjectHandle
	doc     kho.DocumentID

	wrapped string // set by Wrap
	version int
}

func (r *transitRecipient) Wrap(fileKey []byte) ([]*age.Stanza, error) {
	wrapped, v, err := r.keys.Wrap(r.ctx, r.subject, fileKey, binding(r.doc, r.subject))
	if err != nil {
		return nil, err
	}
	r.wrapped, r.version = wrapped, v
	return []*age.Stanza{{
		Type: stanzaType,
		Args: []string{"1", string(r.doc), string(r.subject), strconv.Itoa(v)},
		Body: []byte(wrapped),
	}}, nil
}

// WrapWithLabels makes the stanza refuse company: a kho object has exactly
// one recipient.
func (r *transitRecipient) WrapWithLabels(fileKey []byte) ([]*age.Stanza, []string, error) {
	s, err := r.Wrap(fileKey)
	return s, []string{"kho-transit"}, err
}

// transitIdentity unwraps the file key of one document: it accepts only a
// stanza bound to that document and subject, and unwraps the wrapped key
// PostgreSQL holds for it.
type transitIdentity struct {
	ctx     context.Context
	keys    kho.SubjectKeys
	subject kho.SubjectHandle
	doc     kho.DocumentID
	wrapped string
}

// errBinding reports an object that belongs to another document: swapped or
// copied in the object store.
var errBinding = kho.Errorf(kho.EINTEGRITY, "the stored object belongs to another document")

func (i *transitIdentity) Unwrap(stanzas []*age.Stanza) ([]byte, error) {
	if len(stanzas) != 1 || stanzas[0].Type != stanzaType {
		return nil, kho.Errorf(kho.EINTEGRITY, "the stored object is not a kho ciphertext")
	}
	s := stanzas[0]
	if len(s.Args) != 4 || s.Args[0] != "1" {
		return nil, kho.Errorf(kho.EINTEGRITY, "the stored object has an unknown header version")
	}
	if s.Args[1] != string(i.doc) || s.Args[2] != string(i.subject) {
		return nil, errBinding
	}
	key, err := i.keys.Unwrap(i.ctx, i.subject, i.wrapped, binding(i.doc, i.subject))
	if err != nil {
		return nil, err
	}
	if len(key) != 16 {
		return nil, kho.Errorf(kho.EINTEGRITY, "unwrapped file key has the wrong length")
	}
	return key, nil
}

// ageError keeps kho errors age passes through and classifies the rest
// (header MAC, chunk authentication, truncation) as integrity failures.
func ageError(err error) error {
	if err == nil {
		return nil
	}
	if kho.ErrorCode(err) != kho.EINTERNAL {
		return err
	}
	return kho.WrapError(kho.EINTEGRITY, "the stored object failed authentication", fmt.Errorf("age: %w", err))
}
