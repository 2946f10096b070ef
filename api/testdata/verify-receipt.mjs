// A consent receipt verifier that shares no code with kho: node
// verify-receipt.mjs RECEIPT_FILE JWKS_FILE. It checks the compact JWS's
// ES256 signature with the key the JWKS names (Node's own crypto), and
// prints the receipt's claims as JSON. Exit 1 when it does not verify.
import { createPublicKey, verify } from "node:crypto";
import { readFileSync } from "node:fs";

const [receiptFile, jwksFile] = process.argv.slice(2);
const jws = readFileSync(receiptFile, "utf8").trim();
const jwks = JSON.parse(readFileSync(jwksFile, "utf8"));
const [h, p, s] = jws.split(".");
const header = JSON.parse(Buffer.from(h, "base64url"));
if (header.alg !== "ES256") { console.log("NOT VALID: alg " + header.alg); process.exit(1); }
const jwk = jwks.keys.find((k) => k.kid === header.kid);
if (!jwk) { console.log("NOT VALID: kid not in the JWKS"); process.exit(1); }
const key = createPublicKey({ key: jwk, format: "jwk" });
const ok = verify("sha256", Buffer.from(h + "." + p), { key, dsaEncoding: "ieee-p1363" }, Buffer.from(s, "base64url"));
if (!ok) { console.log("NOT VALID: the signature does not verify"); process.exit(1); }
console.log(Buffer.from(p, "base64url").toString("utf8"));
