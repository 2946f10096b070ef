// An audit export verifier written without kho's code, from the format the
// README documents: node verify-export.mjs EXPORT.jsonl VERIFIER_KEY
//
// It checks each checkpoint's Ed25519 signature (C2SP signed note), that
// each event's leaf hash is SHA-256(0x00 || canonical), that each event names
// the leaf hash of the one before it, and that the RFC 6962 Merkle root of
// all leaves equals the largest checkpoint's root, which must cover every
// event. Exit 0 and "valid" when all hold; exit 1 and the first problem.
import { createHash, createPublicKey, verify } from "node:crypto";
import { readFileSync } from "node:fs";

const [file, vkey] = process.argv.slice(2);
const fail = (msg) => { console.log("NOT VALID: " + msg); process.exit(1); };

// The verifier key: name+keyhash+base64(0x01 || 32-byte Ed25519 key).
// (The base64 may itself hold "+": split at the first two only.)
const [keyName, keyHash, ...rest] = vkey.trim().split("+");
const keyB64 = rest.join("+");
const raw = Buffer.from(keyB64, "base64");
if (raw[0] !== 1 || raw.length !== 33) fail("not an Ed25519 verifier key");
const publicKey = createPublicKey({ key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), raw.subarray(1)]), format: "der", type: "spki" });

const sha256 = (...parts) => createHash("sha256").update(Buffer.concat(parts)).digest();

// A signed note: text, a blank line, then lines "— name base64(hash||sig)".
function checkpoint(note) {
  const at = note.indexOf("\n\n");
  if (at < 0) fail("a checkpoint is not a signed note");
  const text = note.slice(0, at + 1);
  const sigs = note.slice(at + 2).split("\n").filter((l) => l.startsWith("\u2014 " + keyName + " "));
  const ok = sigs.some((l) => {
    const b = Buffer.from(l.split(" ")[2], "base64");
    return b.subarray(0, 4).toString("hex") === keyHash && verify(null, Buffer.from(text, "utf8"), publicKey, b.subarray(4));
  });
  if (!ok) fail("a checkpoint's signature does not verify");
  const [, size, root] = text.split("\n");
  return { size: Number(size), root: Buffer.from(root, "base64") };
}

// RFC 6962 Merkle tree hash.
function mth(leaves) {
  if (leaves.length === 1) return leaves[0];
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return sha256(Buffer.from([1]), mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

// Key-exact, order-free comparison: what a reader is shown (entry) must be
// what was hashed (canonical).
const same = (a, b) => {
  if (typeof a !== "object" || a === null || typeof b !== "object" || b === null) return a === b;
  const ka = Object.keys(a).sort(), kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && same(a[k], b[k]));
};

const checkpoints = [];
const leaves = [];
let prev = "";
for (const line of readFileSync(file, "utf8").split("\n")) {
  if (!line.trim()) continue;
  const l = JSON.parse(line);
  if (l.type === "checkpoint") checkpoints.push(checkpoint(l.note));
  if (l.type !== "event") continue;
  const leaf = sha256(Buffer.from([0]), Buffer.from(l.canonical, "utf8"));
  const e = JSON.parse(l.canonical);
  if (leaf.toString("hex") !== l.leaf_hash) fail(`event ${e.index}: its leaf hash is not SHA-256(0x00 || canonical)`);
  if (!same(l.entry, e)) fail(`event ${e.index}: the entry shown differs from its canonical bytes`);
  if (e.index !== leaves.length) fail(`event ${leaves.length} is missing`);
  if (e.prev !== prev) fail(`event ${e.index} does not follow the one before it`);
  prev = leaf.toString("hex");
  leaves.push(leaf);
}
if (leaves.length === 0) fail("no events");
const last = checkpoints.reduce((a, c) => (c.size > a.size ? c : a), { size: 0 });
if (last.size !== leaves.length) fail(`the last signed checkpoint covers ${last.size} events, the export holds ${leaves.length}`);
if (!mth(leaves).equals(last.root)) fail("the events do not make the signed checkpoint's root");
console.log(`valid: ${leaves.length} events, every one covered by the checkpoint of size ${last.size}`);
