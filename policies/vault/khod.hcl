# khod's Vault policy: the least it needs, nothing more.
#
# khod holds no root or admin token. It logs in with AppRole and receives a
# token carrying only this policy (the default policy is not attached). It
# cannot read or write policies, mount engines, export or back up keys, make
# a key exportable, delete a signing key, or reach any path outside kho's own
# mounts:
#   kho-subjects  Transit, one key per subject (wraps file keys; deleting it
#                 crypto-shreds the subject)
#   kho-signing   Transit, agency signing keys, the audit checkpoint key and
#                 the consent receipt key: never deletable by khod
#   kho-pki       the deployment's root CA: khod reads its certificate only
#   kho-pki-int   the agency signing intermediate: khod has it sign CSRs

# The token's own lifecycle.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/revoke-self" {
  capabilities = ["update"]
}

# Subject keys: create, read metadata, delete (crypto-shredding).
# A key is created with the defaults; it can never be made exportable or
# given a plaintext backup.
path "kho-subjects/keys/+" {
  capabilities = ["create", "read", "update", "delete"]
  denied_parameters = {
    "exportable"             = []
    "allow_plaintext_backup" = []
  }
}
# Only deletion may be allowed (crypto-shredding). Retiring old versions
# (min_decryption_version) is the operator's `kho keys rewrap`: khod could
# otherwise lower it again and undo a retirement.
path "kho-subjects/keys/+/config" {
  capabilities = ["update"]
  allowed_parameters = {
    "deletion_allowed" = []
  }
}
path "kho-subjects/keys/+/rotate" {
  capabilities = ["update"]
}
path "kho-subjects/encrypt/+" {
  capabilities = ["update"]
}
path "kho-subjects/decrypt/+" {
  capabilities = ["update"]
}
path "kho-subjects/rewrap/+" {
  capabilities = ["update"]
}

# Signing keys: create, read public keys, rotate, sign, verify. No delete,
# no config, no export.
path "kho-signing/keys/+" {
  capabilities = ["create", "read", "update"]
  denied_parameters = {
    "exportable"             = []
    "allow_plaintext_backup" = []
  }
}
path "kho-signing/keys/+/rotate" {
  capabilities = ["update"]
}
path "kho-signing/sign/+" {
  capabilities = ["update"]
}
path "kho-signing/sign/+/+" {
  capabilities = ["update"]
}
path "kho-signing/verify/+" {
  capabilities = ["update"]
}
path "kho-signing/verify/+/+" {
  capabilities = ["update"]
}

# PKI: read the root and intermediate certificates; sign agency CSRs.
path "kho-pki/ca/pem" {
  capabilities = ["read"]
}
path "kho-pki/cert/ca" {
  capabilities = ["read"]
}
path "kho-pki/issuer/default/json" {
  capabilities = ["read"]
}
path "kho-pki-int/ca_chain" {
  capabilities = ["read"]
}
path "kho-pki-int/cert/*" {
  capabilities = ["read"]
}
path "kho-pki-int/sign/agency-signing" {
  capabilities = ["update"]
}
