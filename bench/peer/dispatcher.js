// The benchmark's peer: a dispatcher written the way BullMQ's documentation
// recommends, to set crier's throughput beside. `produce` reads the audience
// (SSCAN of the segment, pipelined HGETALL) and adds one BullMQ job per message
// with Queue.addBulk to a queue per channel; `work` runs one Worker per channel
// with crier's in-flight cap as its concurrency, renders each message, POSTs
// the same request crier sends to the same simulator through an undici Pool
// per provider (keep-alive, as many connections as the concurrency), and
// records the outcome in Redis: one counter and one receipt per message, sent
// as one pipeline (one round trip).
//
//   node dispatcher.js work    SETTINGS_JSON   (prints "ready", then one JSON line when done)
//   node dispatcher.js produce SETTINGS_JSON   (prints one JSON line when every job is queued)
//
// SETTINGS_JSON: {"redis_port":N, "sim_url":"http://127.0.0.1:N", "prefix":"crier:",
//   "segment":"bench:all", "run":"r1", "job":{...the job document...},
//   "concurrency":{"email":64,"sms":64,"push":64}, "expected":N,
//   "sendgrid_key":"..", "twilio_sid":"..", "twilio_token":"..", "twilio_from":"..",
//   "fcm_project":"..", "fcm_token":"..", "from_email":".."}
"use strict";

const { Queue, Worker } = require("bullmq");
const Redis = require("ioredis");
const { Pool } = require("undici");

const CONTACT = { email: "email", sms: "phone", push: "push_token" };
const SCAN_COUNT = 1000;

function settings() {
  return JSON.parse(process.argv[3]);
}

// BullMQ's advice: give Queues and Workers connection options (each Worker
// makes its own blocking connection), maxRetriesPerRequest null for Workers.
function connOpts(s) {
  return { host: "127.0.0.1", port: s.redis_port, maxRetriesPerRequest: null };
}

function queueName(s, channel) {
  return `peer-${s.run}-${channel}`;
}

function render(template, sub) {
  return template.replace(/\{\{\s*([a-zA-Z0-9_.]+)\s*\}\}/g, (_, f) => (sub[f] !== undefined ? sub[f] : ""));
}

async function produce(s) {
  const t0 = Date.now();
  const redis = new Redis(connOpts(s));
  const queues = {};
  for (const ch of s.job.channels) queues[ch] = new Queue(queueName(s, ch), { connection: connOpts(s) });
  const opts = { removeOnComplete: true, removeOnFail: 1000, attempts: 5, backoff: { type: "exponential", delay: 500 } };
  let cursor = "0";
  let pos = 0;
  let queued = 0;
  do {
    const [next, ids] = await redis.sscan(`${s.prefix}seg:${s.segment}`, cursor, "COUNT", SCAN_COUNT);
    cursor = next;
    if (ids.length === 0) continue;
    const pipe = redis.pipeline();
    for (const id of ids) pipe.hgetall(`${s.prefix}sub:${id}`);
    const subs = await pipe.exec();
    const batches = {};
    for (const ch of s.job.channels) batches[ch] = [];
    ids.forEach((id, i) => {
      const sub = subs[i][1];
      const p = pos++;
      for (const ch of s.job.channels) {
        const address = sub[CONTACT[ch]];
        if (!address) continue;
        batches[ch].push({
          name: "send",
          data: { job: s.job.id, sub: id, name: sub.name || "", address, ref: `${s.job.id}/${p}/${ch}` },
          opts,
        });
      }
    });
    await Promise.all(
      s.job.channels.filter((ch) => batches[ch].length).map(async (ch) => {
        await queues[ch].addBulk(batches[ch]);
        queued += batches[ch].length;
      })
    );
  } while (cursor !== "0");
  await Promise.all(Object.values(queues).map((q) => q.close()));
  redis.disconnect();
  process.stdout.write(JSON.stringify({ queued, produce_ms: Date.now() - t0 }) + "\n");
}

// The request of one message: the pool's path, headers and body.
function requestFor(s, ch, d) {
  const m = s.job.message;
  const json = "application/json";
  if (ch === "email") {
    const body = {
      personalizations: [{ to: [{ email: d.address }], custom_args: { crier_ref: d.ref, crier_job: d.job } }],
      from: { email: s.from_email },
      subject: m.subject,
      content: [{ type: "text/plain", value: render(m.text, d) }],
    };
    return { path: "/v3/mail/send", headers: { "content-type": json, authorization: `Bearer ${s.sendgrid_key}` }, body: JSON.stringify(body) };
  }
  if (ch === "sms") {
    const form = new URLSearchParams({ To: d.address, From: s.twilio_from, Body: render(m.sms, d) });
    return {
      path: `/2010-04-01/Accounts/${s.twilio_sid}/Messages.json`,
      headers: { "content-type": "application/x-www-form-urlencoded", authorization: s.twilio_basic },
      body: form.toString(),
    };
  }
  const body = {
    message: {
      token: d.address,
      notification: { title: render(m.push.title, d), body: render(m.push.body, d) },
      data: { crier_ref: d.ref, crier_job: d.job },
      android: { priority: "normal", collapse_key: d.ref },
      apns: { headers: { "apns-priority": "5" } },
    },
  };
  return {
    path: `/v1/projects/${s.fcm_project}/messages:send`,
    headers: { "content-type": json, authorization: `Bearer ${s.fcm_token}` },
    body: JSON.stringify(body),
  };
}

async function work(s) {
  const record = new Redis(connOpts(s));
  const workers = [];
  const pools = [];
  let done = 0;
  let failed = 0;
  let firstMs = 0;
  let finished = false;
  s.twilio_basic = `Basic ${Buffer.from(`${s.twilio_sid}:${s.twilio_token}`).toString("base64")}`;

  const finish = async () => {
    if (finished) return;
    finished = true;
    const endMs = Date.now();
    await Promise.all(workers.map((w) => w.close()));
    await Promise.all(pools.map((p) => p.close()));
    record.disconnect();
    const rssMb = process.resourceUsage().maxRSS / 1024;
    process.stdout.write(JSON.stringify({ messages: done, failed, first_ms: firstMs, end_ms: endMs, rss_mb: rssMb }) + "\n");
    process.exit(0);
  };

  for (const ch of s.job.channels) {
    const conc = s.concurrency[ch];
    // one keep-alive connection per concurrent job, no pipelining (as crier)
    const pool = new Pool(s.sim_url, { connections: conc, pipelining: 1, keepAliveTimeout: 60000 });
    pools.push(pool);
    const w = new Worker(
      queueName(s, ch),
      async (job) => {
        const req = requestFor(s, ch, job.data);
        const t = process.hrtime.bigint();
        const resp = await pool.request({ method: "POST", path: req.path, headers: req.headers, body: req.body });
        await resp.body.dump();
        const code = resp.statusCode;
        if (code === 429 || code >= 500) throw new Error(`HTTP ${code}`);
        const status = code >= 200 && code < 300 ? "sent" : "failed";
        const us = Number((process.hrtime.bigint() - t) / 1000n);
        await record
          .pipeline()
          .hincrby(`peer:job:${job.data.job}`, `${status}:${ch}`, 1)
          .xadd("peer:receipts", "MAXLEN", "~", "1000000", "*", "job", job.data.job, "sub", job.data.sub,
            "channel", ch, "status", status, "code", String(code), "latency_us", String(us))
          .exec();
        return status;
      },
      { connection: connOpts(s), concurrency: conc }
    );
    w.on("completed", () => {
      if (firstMs === 0) firstMs = Date.now();
      done++;
      if (done + failed >= s.expected) finish();
    });
    w.on("failed", (job, err) => {
      if (job && job.attemptsMade >= (job.opts.attempts || 1)) {
        failed++;
        if (failed <= 5) process.stderr.write(`peer: ${ch} job failed: ${err.message}\n`);
        if (done + failed >= s.expected) finish();
      }
    });
    workers.push(w);
  }
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  process.stdout.write("ready\n");
}

const mode = process.argv[2];
const s = settings();
(mode === "produce" ? produce(s) : mode === "work" ? work(s) : Promise.reject(new Error("mode must be work or produce")))
  .catch((e) => {
    process.stderr.write(`peer: ${e.stack || e}\n`);
    process.exit(1);
  });
