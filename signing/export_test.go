package signing

import (
	"fmt"
	"time"
)

// PrepareSignatureForTest writes an empty signature of the given SubFilter
// into pdf, claiming time m in /M, the way kho writes its own, so that a
// test can have another producer (OpenSSL, a test CA) make the CMS. It
// returns the bytes to sign and what embeds the CMS.
func PrepareSignatureForTest(pdf []byte, subFilter string, m time.Time) ([]byte, func([]byte) ([]byte, error), error) {
	in, err := readStructure(pdf)
	if err != nil {
		return nil, nil, err
	}
	in.sigKind = "/Type /Sig /Filter /Adobe.PPKLite /SubFilter /" + subFilter
	in.sigDict = fmt.Sprintf("/M (D:%s+00'00')", m.UTC().Format("20060102150405"))
	in.fieldName = fmt.Sprintf("other-%d", time.Now().UnixNano())
	p, err := buildUpdate(*in)
	if err != nil {
		return nil, nil, err
	}
	return p.signedData(), func(cms []byte) ([]byte, error) { return p.pdf, p.embed(cms) }, nil
}

// AddDSSForTest appends a DSS with the given certificates and CRLs.
func AddDSSForTest(pdf []byte, certs, crls [][]byte) ([]byte, error) {
	in, err := readStructure(pdf)
	if err != nil {
		return nil, err
	}
	return buildDSS(*in, certs, crls), nil
}
