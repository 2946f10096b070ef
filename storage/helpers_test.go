package storage_test

import "github.com/minio/minio-go/v7/pkg/credentials"

func credentialsOf(access, secret string) *credentials.Credentials {
	return credentials.NewStaticV4(access, secret, "")
}
