package audit

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"golang.org/x/mod/sumdb/note"

	"kho"
	"kho/postgres"
)

// Log is the audit trail as readers and verifiers see it: checkpoints,
// proofs, queries and exports.
type Log struct {
	db       *postgres.DB
	signer   note.Signer
	origin   string
	verifier note.Verifier
	vkey     string
	// replica, when set, answers searches (the access log, officers'
	// search): reads that may lag the primary by a moment.
	replica *postgres.DB
}

// ReadFrom sends the log's searches to a read replica. Appends, checkpoints,
// verification and exports stay on the primary; a search the replica cannot
// answer (down, or cancelled by its replay) is answered by the primary.
func (l *Log) ReadFrom(replica *postgres.DB) { l.replica = replica }

// NewLog validates its arguments. signer signs checkpoints and vkey is its
// public verifier key (note.NewVerifier's format); origin names the log in
// every checkpoint (C2SP tlog-checkpoint), for example "kho.gov.vn/audit".
func NewLog(db *postgres.DB, signer note.Signer, vkey, origin string) (*Log, error) {
	if db == nil || signer == nil {
		return nil, kho.Errorf(kho.EINVALID, "audit: a database and a checkpoint signer are required")
	}
	if origin == "" || strings.ContainsAny(origin, "\n\r") {
		return nil, kho.Errorf(kho.EINVALID, "audit: the log origin must be one non-empty line")
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, kho.WrapError(kho.EINVALID, "audit: verifier key", err)
	}
	if v.Name() != signer.Name() || v.KeyHash() != signer.KeyHash() {
		return nil, kho.Errorf(kho.EINVALID, "audit: the verifier key is not the signer's")
	}
	return &Log{db: db, signer: signer, origin: origin, verifier: v, vkey: vkey}, nil
}

// VerifierKey returns the public key verifiers need.
func (l *Log) VerifierKey() string { return l.vkey }

// Origin returns the log's name in its checkpoints.
func (l *Log) Origin() string { return l.origin }

// Checkpoint is a signed statement of the log's size and root.
type Checkpoint struct {
	Size uint64 `json:"size"`
	Root []byte `json:"root"`
	Note string `json:"note"` // the signed note, as served and exported
}

// checkpointBody formats the C2SP tlog-checkpoint body.
func checkpointBody(origin string, size uint64, root []byte) string {
	return fmt.Sprintf("%s\n%d\n%s\n", origin, size, base64.StdEncoding.EncodeToString(root))
}

// parseCheckpoint reads a signed checkpoint, verifying its signature.
func parseCheckpoint(text, origin string, v note.Verifier) (*Checkpoint, error) {
	n, err := note.Open([]byte(text), note.VerifierList(v))
	if err != nil {
		return nil, fmt.Errorf("checkpoint signature does not verify: %w", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[0] != origin {
		return nil, errors.New("checkpoint is not for this log")
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return nil, errors.New("checkpoint has a malformed size")
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != hasher.Size() {
		return nil, errors.New("checkpoint has a malformed root")
	}
	return &Checkpoint{Size: size, Root: root, Note: text}, nil
}

// OpenCheckpoint reads a signed checkpoint of this log, verifying its
// signature with the log's key: size and root come from the signed text,
// never from a database column.
func (l *Log) OpenCheckpoint(text string) (*Checkpoint, error) {
	cp, err := parseCheckpoint(text, l.origin, l.verifier)
	if err != nil {
		return nil, kho.WrapError(kho.EINTEGRITY, "audit: checkpoint", err)
	}
	return cp, nil
}

// MakeCheckpoint signs a checkpoint of the log as it stands, unless the latest
// one already covers every event. Any replica may call it; one checkpoint per
// size is kept.
func (l *Log) MakeCheckpoint(ctx context.Context) (*Checkpoint, error) {
	var size uint64
	var hashes [][]byte
	if err := l.db.Pool.QueryRow(ctx, `SELECT size, range_hashes FROM audit_head WHERE id = 1`).Scan(&size, &hashes); err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "audit: read log head", err)
	}
	latest, err := l.LatestCheckpoint(ctx)
	if err != nil && kho.ErrorCode(err) != kho.ENOTFOUND {
		return nil, err
	}
	if size == 0 || (latest != nil && latest.Size >= size) {
		return latest, nil
	}
	rng, err := rangeFactory.NewRange(0, size, hashes)
	if err != nil {
		return nil, kho.WrapError(kho.EINTEGRITY, "audit: the log head is corrupt", err)
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return nil, kho.WrapError(kho.EINTERNAL, "audit: root", err)
	}
	signed, err := note.Sign(&note.Note{Text: checkpointBody(l.origin, size, root)}, l.signer)
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "audit: sign checkpoint", err)
	}
	if _, err := l.db.Pool.Exec(ctx, `INSERT INTO audit_checkpoints (size, root, note) VALUES ($1, $2, $3) ON CONFLICT (size) DO NOTHING`,
		int64(size), root, string(signed)); err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "audit: store checkpoint", err)
	}
	return &Checkpoint{Size: size, Root: root, Note: string(signed)}, nil
}

// LatestCheckpoint returns the newest checkpoint. Errors: ENOTFOUND.
func (l *Log) LatestCheckpoint(ctx context.Context) (*Checkpoint, error) {
	var c Checkpoint
	var size int64
	err := l.db.Pool.QueryRow(ctx, `SELECT size, root, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&size, &c.Root, &c.Note)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, kho.Errorf(kho.ENOTFOUND, "no checkpoint yet")
	}
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "audit: read checkpoint", err)
	}
	c.Size = uint64(size)
	return &c, nil
}

// nodeHashes fetches the stored hashes of ids, in order.
func (l *Log) nodeHashes(ctx context.Context, ids []compact.NodeID) ([][]byte, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	levels := make([]int16, len(ids))
	idxs := make([]int64, len(ids))
	for i, id := range ids {
		levels[i], idxs[i] = int16(id.Level), int64(id.Index)
	}
	rows, err := l.db.Pool.Query(ctx, `SELECT n.hash FROM unnest($1::smallint[], $2::bigint[]) WITH ORDINALITY AS w(level, idx, ord)
		LEFT JOIN audit_tree_nodes n ON n.level = w.level AND n.idx = w.idx ORDER BY w.ord`, levels, idxs)
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "audit: read tree nodes", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "audit: read tree nodes", err)
	}
	for _, h := range out {
		if h == nil {
			return nil, kho.Errorf(kho.EINTEGRITY, "audit: a tree node is missing")
		}
	}
	return out, nil
}

// InclusionProof proves that the leaf at Index is in the tree of TreeSize.
type InclusionProof struct {
	Index    uint64   `json:"index"`
	TreeSize uint64   `json:"tree_size"`
	Hashes   [][]byte `json:"hashes"`
}

// Inclusion returns the proof for the leaf at index in the tree of size.
func (l *Log) Inclusion(ctx context.Context, index, size uint64) (*InclusionProof, error) {
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, kho.WrapError(kho.EINVALID, "audit: inclusion proof", err)
	}
	h, err := l.nodeHashes(ctx, nodes.IDs)
	if err != nil {
		return nil, err
	}
	p, err := nodes.Rehash(h, hasher.HashChildren)
	if err != nil {
		return nil, kho.WrapError(kho.EINTERNAL, "audit: inclusion proof", err)
	}
	return &InclusionProof{Index: index, TreeSize: size, Hashes: p}, nil
}

// Consistency returns the proof that the tree of size1 is a prefix of the
// tree of size2.
func (l *Log) Consistency(ctx context.Context, size1, size2 uint64) ([][]byte, error) {
	var head uint64
	if err := l.db.Pool.QueryRow(ctx, `SELECT size FROM audit_head WHERE id = 1`).Scan(&head); err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "audit: read log head", err)
	}
	if size2 > head || size1 > size2 {
		return nil, kho.Errorf(kho.EINVALID, "sizes must satisfy 0 <= from <= to <= %d", head)
	}
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, kho.WrapError(kho.EINVALID, "audit: consistency proof", err)
	}
	h, err := l.nodeHashes(ctx, nodes.IDs)
	if err != nil {
		return nil, err
	}
	p, err := nodes.Rehash(h, hasher.HashChildren)
	if err != nil {
		return nil, kho.WrapError(kho.EINTERNAL, "audit: consistency proof", err)
	}
	return p, nil
}

// Record appends ev in a transaction of its own.
func (l *Log) Record(ctx context.Context, ev Event) error { return RecordNow(ctx, l.db, ev) }
