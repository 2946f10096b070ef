// Package signing will hold kho's document signatures: PAdES for PDFs and
// detached JWS for other media, made with agency keys that never leave Vault,
// and the verification reports. It imports the root package and is handed a
// signer by cmd/.
package signing
