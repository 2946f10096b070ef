// A consent receipt verifier that shares no code with kho, built on the
// jose library: node scripts/node/verify-receipt.mjs JWS_FILE JWKS_FILE TYP.
// It verifies the compact JWS (ES256) against the published JWKS, checks
// its typ header, and prints its claims as JSON. Exit 1 when it does not
// verify.
import { readFileSync } from "node:fs";
import { createLocalJWKSet, jwtVerify } from "jose";

const [jwsFile, jwksFile, typ] = process.argv.slice(2);
const jws = readFileSync(jwsFile, "utf8").trim();
const keys = createLocalJWKSet(JSON.parse(readFileSync(jwksFile, "utf8")));
try {
  const { payload } = await jwtVerify(jws, keys, { algorithms: ["ES256"], typ: typ || undefined });
  console.log(JSON.stringify(payload));
} catch (e) {
  console.log("NOT VALID: " + e.message);
  process.exit(1);
}
