// Loads every record of a coopsync change-log dump with @automerge/automerge, as a new
// tablet would: apply the whole log from scratch, save, load the saved bytes, and make
// one more edit. Used by the hostile battery test (tests/tests/e2e/hostile_battery.rs):
//   node load-check.mjs DUMP.json
// DUMP.json: {"<doc_id>": {"heads": ["<hex>", ...], "changes": ["<base64>", ...]}, ...}
import * as A from "@automerge/automerge";
import { readFileSync } from "node:fs";

const dump = JSON.parse(readFileSync(process.argv[2], "utf8"));
let ok = 0;
const failed = [];
for (const [id, { heads, changes }] of Object.entries(dump)) {
  try {
    const bytes = changes.map((c) => new Uint8Array(Buffer.from(c, "base64")));
    const [doc] = A.applyChanges(A.init(), bytes);
    const got = A.getHeads(doc).slice().sort();
    const want = heads.slice().sort();
    if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`heads ${got} != ${want}`);
    const loaded = A.load(A.save(doc));
    A.change(loaded, (d) => { d.load_check = new A.ImmutableString("ok"); });
    ok += 1;
  } catch (e) {
    failed.push(`${id}: ${e.message}`);
  }
}
console.log(JSON.stringify({ ok, failed }));
process.exit(failed.length ? 1 : 0);
