// A tablet-style coopsync client on @automerge/automerge, as a tablet app would be built:
// records are Automerge documents created and edited offline, then synced with
// POST /api/v1/sync (gzip JSON, base64 change chunks). Two simulated tablets work on the
// same training session offline and must end with identical documents. Changes travel
// hex-encoded (`"encoding": "hex"`): under gzip that is about a quarter smaller than base64.
//
//   COOPSYNC_PASSWORD=... node client.mjs --server http://127.0.0.1:8080 --username sokha [--province 07]
//
// Exits non-zero if anything does not converge.
import * as A from "@automerge/automerge";
import { gzipSync } from "node:zlib";
import { randomUUID } from "node:crypto";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, v, i, all) => (v.startsWith("--") ? [...acc, [v.slice(2), all[i + 1]]] : acc), []),
);
const server = (args.server ?? "http://127.0.0.1:8080").replace(/\/$/, "");
const username = args.username;
const password = process.env.COOPSYNC_PASSWORD;
const province = args.province ?? "07";
if (!username || !password) {
  console.error("usage: COOPSYNC_PASSWORD=... node client.mjs --server URL --username NAME [--province 07]");
  process.exit(2);
}

// Strings the server should treat as single values (names, codes) are written as
// ImmutableString: a plain JS string becomes collaborative Text, which the server also
// reads, but concurrent edits of Text interleave letters instead of showing a conflict.
const S = (s) => new A.ImmutableString(s);

class Tablet {
  constructor(name) {
    this.name = name;
    this.deviceId = randomUUID(); // one per app installation
    this.docs = new Map(); // doc id -> { type, doc }
    this.delivered = new Set(); // change hashes the server acknowledged
    this.cursor = undefined;
    this.requests = 0;
  }

  async login() {
    const r = await fetch(`${server}/api/v1/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username, password, device_id: this.deviceId, device_name: this.name }),
    });
    const body = await r.json();
    if (r.status !== 200) throw new Error(`login: ${r.status} ${JSON.stringify(body)}`);
    this.token = body.access_token;
    this.refreshToken = body.refresh_token; // keep it: it outlives a season offline
    this.userId = body.user_id;
  }

  create(type, fields) {
    const id = randomUUID();
    // A fresh actor per installation: never reuse one after a reinstall.
    // The id in the first change keeps it unique: two records with the same fields made
    // in the same second would otherwise have identical first changes (refused).
    const doc = A.from({ type: S(type), schema_version: 1, id: S(id), ...fields }, { actor: this.actor() });
    this.docs.set(id, { type, doc });
    return id;
  }

  actor() {
    this.actorId ??= A.getActorId(A.init());
    return this.actorId;
  }

  edit(id, fn) {
    const entry = this.docs.get(id);
    entry.doc = A.change(A.clone(entry.doc, { actor: this.actor() }), fn);
  }

  undelivered() {
    const push = [];
    for (const [doc_id, { type, doc }] of this.docs) {
      // After a complete sync only the changes after its heads can be undelivered:
      // listing a long history on every request would cost in proportion to it.
      const synced = this.docs.get(doc_id).synced;
      const all = synced ? A.getChanges(A.view(doc, synced), doc) : A.getAllChanges(doc);
      const changes = all.filter((c) => !this.delivered.has(A.decodeChange(c).hash));
      if (changes.length) push.push({ doc_id, doc_type: type, changes: changes.map((c) => Buffer.from(c).toString("hex")) });
    }
    return push;
  }

  async sync() {
    let need_full_history = [];
    for (let round = 0; round < 1000; round++) {
      const push = this.undelivered();
      const request = { protocol_version: 1, encoding: "hex", cursor: this.cursor, push, pull: true, need_full_history };
      const r = await fetch(`${server}/api/v1/sync`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${this.token}`,
          "content-type": "application/json",
          "content-encoding": "gzip",
        },
        body: gzipSync(JSON.stringify(request)),
      });
      this.requests++;
      const body = await r.json();
      if (r.status !== 200) throw new Error(`sync: ${r.status} ${JSON.stringify(body)}`);
      // Everything sent is stored unless listed in errors (which must not be re-sent).
      push.forEach((group, i) => {
        for (const c of group.changes) this.delivered.add(A.decodeChange(Buffer.from(c, "hex")).hash);
        for (const e of body.push[i].errors ?? []) console.error(`${this.name}: rejected ${group.doc_id}: ${e.code}: ${e.message}`);
      });
      need_full_history = [];
      if (body.pull.resync) {
        // The server was restored from a backup and may lack changes it acknowledged:
        // push every change this installation made again (those it has come back as
        // duplicates). Other devices' changes are theirs to send.
        for (const entry of this.docs.values()) {
          delete entry.synced;
          for (const c of A.getAllChanges(entry.doc)) {
            const d = A.decodeChange(c);
            if (d.actor === this.actor()) this.delivered.delete(d.hash);
          }
        }
      }
      for (const id of body.pull.removed ?? []) this.docs.delete(id);
      for (const group of body.pull.docs) {
        const changes = group.changes.map((c) => new Uint8Array(Buffer.from(c, "hex")));
        for (const c of changes) this.delivered.add(A.decodeChange(c).hash);
        const entry = this.docs.get(group.doc_id) ?? { type: group.doc_type, doc: A.init({ actor: this.actor() }) };
        [entry.doc] = A.applyChanges(entry.doc, changes);
        this.docs.set(group.doc_id, entry);
      }
      this.cursor = body.pull.cursor;
      if (!body.pull.more && this.undelivered().length === 0) {
        for (const entry of this.docs.values()) entry.synced = A.getHeads(entry.doc);
        return;
      }
    }
    throw new Error("sync did not finish");
  }

  heads(id) {
    return A.getHeads(this.docs.get(id).doc).slice().sort().join(",");
  }
}

let failures = 0;
let passes = 0;
const check = (ok, what) => {
  console.log(`${ok ? "ok" : "FAILED"}: ${what}`);
  if (ok) passes++;
  else failures++;
};

const a = new Tablet("js tablet A");
const b = new Tablet("js tablet B");
await a.login();
await b.login();

// Tablet A, offline: a cooperative, a member, a Think.Coop session with attendance.
const coop = a.create("cooperative", {
  name_khmer: S("សហគមន៍កសិកម្មភ្នំ"),
  name_latin: S("Phnom Agricultural Cooperative"),
  province_code: S(province),
  status: S("active"),
});
const member = a.create("member", {
  cooperative_id: S(coop),
  full_name_khmer: S("សុខ ស្រីមុំ"),
  sex: S("female"),
  year_of_birth: 1988, // a whole JS number is stored as Int
  role: S("member"),
});
const session = a.create("training_session", {
  programme: S("think_coop"),
  cooperative_id: S(coop),
  province_code: S(province),
  location: "Pagoda hall", // a plain JS string: stored as Text, read leniently by the server
  scheduled_date: S("2026-11-20"),
  planned_hours: 6,
  status: S("scheduled"),
  attendance: {},
});
a.edit(session, (d) => {
  d.attendance[member] = { status: S("present"), hours: 6, member_id: S(member), recorded_by: S(a.userId), recorded_at: new Date() };
});
await a.sync();
await b.sync();
check(b.docs.size === 3, "tablet B received the three records");

// Both offline: B records a guest farmer (not in any cooperative), A edits the session.
const guest = randomUUID();
b.edit(session, (d) => {
  d.attendance[guest] = { status: S("partial"), hours: 3.5, name: S("Guest farmer"), sex: S("male"), age: 41, recorded_by: S(b.userId), recorded_at: new Date() };
});
a.edit(session, (d) => {
  d.status = S("held");
});
await b.sync();
await a.sync();
await b.sync();

for (const id of [coop, member, session]) check(a.heads(id) === b.heads(id), `tablets converge on ${a.docs.get(id).type}`);
const att = a.docs.get(session).doc.attendance;
check(Object.keys(att).length === 2, "the session holds both attendance entries");
check(String(a.docs.get(session).doc.status) === "held", "A's edit is on B's copy too");
console.log(`js-client: ${a.requests + b.requests} sync requests`);
console.log(`js-client: ${passes} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
