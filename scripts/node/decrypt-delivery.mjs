// Opens a kho delivery with the jose library, sharing no code with kho:
// node scripts/node/decrypt-delivery.mjs DELIVERY_FILE PRIVATE_JWK_FILE.
// The file holds either one compact JWE (application/jose) or a segmented
// delivery (application/vnd.kho.jwe-stream: one compact JWE a line, each
// naming its stream, sequence number and whether it is the last). Every
// JWE is ECDH-ES+A256KW with A256GCM. It prints the first protected
// header, the SHA-256 and size of the whole plaintext and the number of
// segments as JSON. Exit 1 when anything does not decrypt or a segmented
// delivery is out of order, spliced or cut short.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { compactDecrypt, importJWK } from "jose";

const [file, keyFile] = process.argv.slice(2);
const lines = readFileSync(file, "utf8").split("\n").filter((l) => l.length > 0);
const jwk = JSON.parse(readFileSync(keyFile, "utf8"));
try {
  const key = await importJWK(jwk, "ECDH-ES+A256KW");
  const hash = createHash("sha256");
  let size = 0;
  let first;
  for (const [i, line] of lines.entries()) {
    const { plaintext, protectedHeader: h } = await compactDecrypt(line, key);
    if (i === 0) first = h;
    if (lines.length > 1 || h.typ === "kho-delivery-segment+jwe") {
      const s = h.kho_stream || {};
      if (h.typ !== "kho-delivery-segment+jwe" || s.id !== first.kho_stream?.id || s.seq !== i || s.last !== (i === lines.length - 1)) {
        throw new Error(`segment ${i} is out of place`);
      }
    }
    hash.update(plaintext);
    size += plaintext.length;
  }
  console.log(JSON.stringify({ header: first, sha256: hash.digest("hex"), size, segments: lines.length }));
} catch (e) {
  console.log("NOT VALID: " + e.message);
  process.exit(1);
}
