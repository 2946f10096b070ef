// Opens a kho delivery with the jose library, sharing no code with kho:
// node scripts/node/decrypt-delivery.mjs JWE_FILE PRIVATE_JWK_FILE. It
// decrypts the compact JWE (ECDH-ES+A256KW, A256GCM) and prints its
// protected header and the SHA-256 of the plaintext as JSON. Exit 1 when it
// does not decrypt.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { compactDecrypt, importJWK } from "jose";

const [jweFile, keyFile] = process.argv.slice(2);
const jwe = readFileSync(jweFile, "utf8").trim();
const jwk = JSON.parse(readFileSync(keyFile, "utf8"));
try {
  const key = await importJWK(jwk, "ECDH-ES+A256KW");
  const { plaintext, protectedHeader } = await compactDecrypt(jwe, key);
  console.log(JSON.stringify({ header: protectedHeader, sha256: createHash("sha256").update(plaintext).digest("hex"), size: plaintext.length }));
} catch (e) {
  console.log("NOT VALID: " + e.message);
  process.exit(1);
}
