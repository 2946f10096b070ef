// Package minioadmin provisions MinIO for kho with the operator's root
// credentials: khod's bucket, and a MinIO user for khod whose policy reaches
// that bucket and nothing else. Only the kho CLI imports it, so khod never
// links MinIO's admin client nor sees root credentials.
package minioadmin

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/minio/madmin-go/v3"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"kho"
	"kho/storage"
)

// Root is a MinIO reached with root credentials.
type Root struct {
	s3    *minio.Client
	admin *madmin.AdminClient
}

// New connects with root credentials; it does not reach the server yet.
func New(endpoint, rootUser, rootPassword string) (*Root, error) {
	host, secure, err := storage.ParseEndpoint(endpoint)
	if err != nil {
		return nil, kho.WrapError(kho.EINVALID, "minioadmin: endpoint", err)
	}
	s3, err := minio.New(host, &minio.Options{Creds: credentials.NewStaticV4(rootUser, rootPassword, ""), Secure: secure})
	if err != nil {
		return nil, kho.WrapError(kho.EINVALID, "minioadmin: client", err)
	}
	admin, err := madmin.New(host, rootUser, rootPassword, secure)
	if err != nil {
		return nil, kho.WrapError(kho.EINVALID, "minioadmin: admin client", err)
	}
	return &Root{s3: s3, admin: admin}, nil
}

// S3 returns the root S3 client (tests use it to look behind khod's back).
func (r *Root) S3() *minio.Client { return r.s3 }

// EnsureBucket creates bucket when missing.
func (r *Root) EnsureBucket(ctx context.Context, bucket string) error {
	ok, err := r.s3.BucketExists(ctx, bucket)
	if err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "minioadmin: bucket exists", err)
	}
	if ok {
		return nil
	}
	if err := r.s3.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "minioadmin: make bucket "+bucket, err)
	}
	return nil
}

// BucketPolicy returns the IAM policy that lets its holder read, write and
// delete objects in bucket (multipart uploads included) and nothing else: no
// other bucket, no bucket creation or deletion, no bucket policy changes.
func BucketPolicy(bucket string) ([]byte, error) {
	type statement struct {
		Effect   string   `json:"Effect"`
		Action   []string `json:"Action"`
		Resource []string `json:"Resource"`
	}
	doc := struct {
		Version   string      `json:"Version"`
		Statement []statement `json:"Statement"`
	}{
		Version: "2012-10-17",
		Statement: []statement{
			{"Allow", []string{"s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"}, []string{"arn:aws:s3:::" + bucket}},
			{"Allow", []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}, []string{"arn:aws:s3:::" + bucket + "/*"}},
		},
	}
	return json.Marshal(doc)
}

// EnsureUser creates (or resets the secret of) user, writes a policy named
// after it limited to bucket, and attaches it.
func (r *Root) EnsureUser(ctx context.Context, user, secret, bucket string) error {
	if err := r.admin.AddUser(ctx, user, secret); err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "minioadmin: add user", err)
	}
	pol, err := BucketPolicy(bucket)
	if err != nil {
		return kho.WrapError(kho.EINTERNAL, "minioadmin: policy", err)
	}
	name := user + "-bucket"
	if err := r.admin.AddCannedPolicy(ctx, name, pol); err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "minioadmin: add policy", err)
	}
	if _, err := r.admin.AttachPolicy(ctx, madmin.PolicyAssociationReq{Policies: []string{name}, User: user}); err != nil {
		if madmin.ToErrorResponse(err).Code != "XMinioAdminPolicyChangeAlreadyApplied" {
			return kho.WrapError(kho.EUNAVAILABLE, fmt.Sprintf("minioadmin: attach policy %s", name), err)
		}
	}
	return nil
}

// RemoveUser deletes a MinIO user (not its policy).
func (r *Root) RemoveUser(ctx context.Context, user string) error {
	if err := r.admin.RemoveUser(ctx, user); err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "minioadmin: remove user", err)
	}
	return nil
}
