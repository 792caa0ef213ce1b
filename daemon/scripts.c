/* The Lua scripts (see scripts.h), hashed once with SHA-1 so that EVALSHA can
 * be used without waiting for SCRIPT LOAD's answer. */
#include "scripts.h"

#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cr_error.h"
#include "audit_trim.h"
#include "cr_types.h"
#include "cr_log.h"
#include "confirm.h"
#include "escalate.h"

/* Shared head: type checks made before a script writes anything (Lua scripts
 * do not roll back, so a WRONGTYPE error half-way would leave half a write),
 * and the end of a job that cannot go on, with the reason in its hash. */
static const char guard_lua[] =
    "local function wrongtype(key, want)\n"
    "  local t = redis.call('TYPE', key)['ok']\n"
    "  if t == 'none' or t == want then return nil end\n"
    "  return key .. ' is a ' .. t .. ', not a ' .. want\n"
    "end\n"
    "local function checktypes(list)\n"
    "  for _, kw in ipairs(list) do\n"
    "    local bad = wrongtype(kw[1], kw[2])\n"
    "    if bad then return bad end\n"
    "  end\n"
    "  return nil\n"
    "end\n"
    "local function failjob(job, events, id, now, reason, ret)\n"
    "  local st = redis.call('HGET', job, 'state')\n"
    "  if st == 'completed' or st == 'cancelled' or st == 'expired' or st == 'failed' then return 0 end\n"
    "  local total = 0\n"
    "  for _, s in ipairs({'delivered','sent','failed','bounced','suppressed','expired','cancelled','skipped'}) do\n"
    "    total = total + tonumber(redis.call('HGET', job, s) or '0')\n"
    "  end\n"
    "  redis.call('HSET', job, 'state', 'failed', 'error', reason, 'completed_ms', now, 'messages', total)\n"
    "  if not wrongtype(events, 'stream') then\n"
    "    xadd_kept(events, " CR_EVENTS_MAXLEN ", 'job', id, 'event', 'failed', 't_ms', now, 'error', reason)\n"
    "  end\n"
    "  if tonumber(ret) > 0 then redis.call('EXPIRE', job, ret) end\n"
    "  return 1\n"
    "end\n";

/* Shared tail: a job is finished when its audience is fully expanded, every
 * batch has been acknowledged and no message waits in the retry set; its
 * message total is then the sum of statuses. A job being cancelled ends
 * "cancelled"; one whose expiry passed with messages expired ends "expired". */
static const char complete_lua[] =
    "local function complete(job, events, ledger, id, now, ret)\n"
    "  local h = redis.call('HMGET', job, 'expanded', 'batches', 'batches_done', 'state', 'parked', 'expires_at_ms', 'expired', 'esc_left')\n"
    "  if h[1] ~= '1' or h[2] ~= h[3] or tonumber(h[5] or '0') > 0 then return 0 end\n"
    /* escalation steps still to run keep the job open (escalate.c ends it) */
    "  if h[4] ~= 'cancelling' and tonumber(h[8] or '0') > 0 then return 0 end\n"
    "  if h[4] == 'completed' or h[4] == 'cancelled' or h[4] == 'expired' or h[4] == 'failed' then return 0 end\n"
    "  local total = 0\n"
    "  for _, s in ipairs({'delivered','sent','failed','bounced','suppressed','expired','cancelled','skipped'}) do\n"
    "    total = total + tonumber(redis.call('HGET', job, s) or '0')\n"
    "  end\n"
    "  local final = 'completed'\n"
    "  if h[4] == 'cancelling' then final = 'cancelled'\n"
    "  elseif tonumber(h[7] or '0') > 0 and tonumber(h[6] or '0') > 0 and tonumber(now) >= tonumber(h[6]) then final = 'expired' end\n"
    "  redis.call('HSET', job, 'state', final, 'completed_ms', now, 'messages', total)\n"
    "  xadd_kept(events, " CR_EVENTS_MAXLEN ", 'job', id, 'event', final, 't_ms', now, 'messages', total)\n"
    "  redis.call('UNLINK', job .. ':aud')\n"
    "  if tonumber(ret) > 0 then\n"
    "    redis.call('EXPIRE', job, ret); redis.call('EXPIRE', ledger, ret)\n"
    "    for _, k in ipairs({':early', ':receipts', ':reached', ':confirmed', ':confirmed:segments'}) do\n"
    "      redis.call('EXPIRE', job .. k, ret)\n"
    "    end\n"
    "  end\n"
    "  return 1\n"
    "end\n";

static const char accept_lua[] =
    "local jt = wrongtype(KEYS[1], 'hash')\n"
    "if jt then\n"
    "  redis.call('XADD', KEYS[8], '*', 'job', string.sub(ARGV[5], 1, 65536), 'error', jt, 'code', 'bad_key', 'entry', ARGV[2])\n"
    "  if not wrongtype(KEYS[2], 'stream') then\n"
    "    xadd_kept(KEYS[2], " CR_EVENTS_MAXLEN ", 'job', ARGV[1], 'event', 'rejected', 't_ms', ARGV[4], 'code', 'bad_key', 'error', jt, 'entry', ARGV[2])\n"
    "  end\n"
    "  redis.call('XACK', KEYS[3], ARGV[8], ARGV[2])\n"
    "  return {5, jt}\n"
    "end\n"
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "if st == 'failed' then\n"
    "  redis.call('XACK', KEYS[3], ARGV[8], ARGV[2])\n"
    "  return {4, redis.call('HGET', KEYS[1], 'error') or 'failed'}\n"
    "end\n"
    "if st then\n"
    "  if redis.call('HGET', KEYS[1], 'entry') == ARGV[2] then return {1, st} end\n"
    "  xadd_kept(KEYS[2], " CR_EVENTS_MAXLEN ", 'job', ARGV[1], 'event', 'duplicate', 't_ms', ARGV[4], 'entry', ARGV[2])\n"
    "  redis.call('XACK', KEYS[3], ARGV[8], ARGV[2])\n"
    "  return {0, st}\n"
    "end\n"
    /* a new job: every key it will use must hold the right type, before any write */
    "local bad = checktypes({{KEYS[2], 'stream'}, {KEYS[4], 'zset'}, {KEYS[5], 'zset'}, {KEYS[6], 'string'}, {KEYS[7], 'set'}})\n"
    "if not bad then\n"
    "  local nseg, nreq = tonumber(ARGV[9]), tonumber(ARGV[10])\n"
    "  for i = 9, #KEYS do\n"
    "    local w = wrongtype(KEYS[i], 'set')\n"
    "    if w then\n"
    "      local what = 'segment '\n"
    "      if i - 8 > nseg + nreq then what = 'exclude set ' elseif i - 8 > nseg then what = 'require set ' end\n"
    "      bad = what .. w\n"
    "      break\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if bad then\n"
    "  redis.call('HSET', KEYS[1], 'state', 'failed', 'error', bad, 'priority', ARGV[3], 'created_ms', ARGV[4],\n"
    "    'completed_ms', ARGV[4], 'entry', ARGV[2], 'doc', ARGV[5], 'targeted', 0, 'messages', 0, 'expanded', 0,\n"
    "    'send_at_ms', ARGV[6], 'expires_at_ms', ARGV[7])\n"
    "  if not wrongtype(KEYS[2], 'stream') then\n"
    "    xadd_kept(KEYS[2], " CR_EVENTS_MAXLEN ", 'job', ARGV[1], 'event', 'failed', 't_ms', ARGV[4], 'error', bad, 'entry', ARGV[2])\n"
    "  end\n"
    "  if not wrongtype(KEYS[4], 'zset') then redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1]) end\n"
    "  redis.call('XACK', KEYS[3], ARGV[8], ARGV[2])\n"
    "  return {4, bad}\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'state', 'accepted', 'priority', ARGV[3], 'created_ms', ARGV[4],\n"
    "  'entry', ARGV[2], 'doc', ARGV[5], 'targeted', 0, 'batches', 0, 'batches_done', 0,\n"
    "  'exp_src', 0, 'exp_cursor', '0', 'exp_step', 0, 'expanded', 0, 'send_at_ms', ARGV[6], 'expires_at_ms', ARGV[7])\n"
    /* a signed job: who signed it, and the audience its key may reach (expand) */
    "local kf = {}\n"
    "if ARGV[11] and ARGV[11] ~= '' then\n"
    "  kf = {'key', ARGV[11]}\n"
    "  redis.call('HSET', KEYS[1], 'key', ARGV[11], 'max_audience', ARGV[12])\n"
    "end\n"
    "xadd_kept(KEYS[2], " CR_EVENTS_MAXLEN ", 'job', ARGV[1], 'event', 'accepted', 't_ms', ARGV[4], 'priority', ARGV[3], 'entry', ARGV[2], unpack(kf))\n"
    "redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])\n"
    /* escalation: the steps, and the first one's due time (escalate.c) */
    "if ARGV[17] == '1' then redis.call('HSET', KEYS[1], 'confirm', 1, 'confirm_segments', ARGV[18]) end\n"
    "if ARGV[13] and ARGV[13] ~= '' then\n"
    "  local n = select(2, string.gsub(ARGV[13], ':%a', ''))\n"
    "  redis.call('HSET', KEYS[1], 'esc', ARGV[13], 'esc_left', n, 'esc_step', 0, 'esc_base', ARGV[15])\n"
    "  redis.call('ZADD', ARGV[14], ARGV[16], ARGV[1] .. '|1')\n"
    "end\n"
    "if tonumber(ARGV[6]) > tonumber(ARGV[4]) then\n"
    "  redis.call('HSET', KEYS[1], 'state', 'scheduled')\n"
    "  redis.call('ZADD', KEYS[5], ARGV[6], ARGV[1])\n"
    "  redis.call('XACK', KEYS[3], ARGV[8], ARGV[2])\n"
    "  xadd_kept(KEYS[2], " CR_EVENTS_MAXLEN ", 'job', ARGV[1], 'event', 'scheduled', 't_ms', ARGV[4], 'send_at_ms', ARGV[6])\n"
    "  return {3, 'scheduled'}\n"
    "end\n"
    "if redis.call('ZCARD', KEYS[4]) > 10000 then redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -10001) end\n"
    "return {2, 'accepted'}\n";

/* Ids already in the audience are dropped by the seen set, which makes the
 * union of sources, SSCAN's repeats and a rescan after a Redis restart (SSCAN
 * cursors do not survive one: the hash seed changes) all add each resident
 * once. The set lives only while the audience is expanded. */
static const char expand_lua[] =
    "local bad = checktypes({{KEYS[1], 'hash'}, {KEYS[2], 'stream'}, {KEYS[3], 'stream'}, {KEYS[5], 'string'}, {KEYS[6], 'set'}})\n"
    "if bad then\n"
    "  if not wrongtype(KEYS[1], 'hash') then failjob(KEYS[1], KEYS[3], ARGV[1], ARGV[7], bad, ARGV[10]) end\n"
    "  redis.call('XACK', KEYS[4], ARGV[8], ARGV[9])\n"
    "  return -3\n"
    "end\n"
    "local h = redis.call('HMGET', KEYS[1], 'exp_step', 'expanded', 'state', 'targeted', 'max_audience', 'key', 'esc')\n"
    "if h[2] == '1' then return -1 end\n"
    "if h[3] == 'failed' then redis.call('XACK', KEYS[4], ARGV[8], ARGV[9]); return -3 end\n"
    "local step = tonumber(h[1] or '0')\n"
    "if step ~= tonumber(ARGV[2]) then return -2 end\n"
    /* one SMISMEMBER and one SADD per thousand ids, not a SADD per id (each
     * of which Redis also feeds to the AOF on its own); an id twice in the
     * page is kept at its first place, as SADD one by one would keep it */
    "local ids, kept = {}, {}\n"
    "for id in string.gmatch(ARGV[5], '[^,]+') do ids[#ids + 1] = id end\n"
    "for i = 1, #ids, 1000 do\n"
    "  local j = math.min(i + 999, #ids)\n"
    "  local was, new = redis.call('SMISMEMBER', KEYS[6], unpack(ids, i, j)), {}\n"
    "  for k = 1, #was do\n"
    "    if was[k] == 0 then new[#new + 1] = ids[i + k - 1] end\n"
    "  end\n"
    "  if #new > 0 and redis.call('SADD', KEYS[6], unpack(new)) < #new then\n"
    "    local once = {}\n"
    "    for _, id in ipairs(new) do\n"
    "      if not once[id] then once[id] = true; kept[#kept + 1] = id end\n"
    "    end\n"
    "  else\n"
    "    for _, id in ipairs(new) do kept[#kept + 1] = id end\n"
    "  end\n"
    "end\n"
    /* a signed job's key caps its audience: residents past the cap get no
     * batch, only a count, and the job says why */
    "local cap = tonumber(h[5] or '0')\n"
    "if cap > 0 and #kept > 0 then\n"
    "  local room = math.max(0, cap - tonumber(h[4] or '0'))\n"
    "  if #kept > room then\n"
    "    redis.call('HINCRBY', KEYS[1], 'beyond_audience', #kept - room)\n"
    "    for i = #kept, room + 1, -1 do kept[i] = nil end\n"
    "    if redis.call('HSETNX', KEYS[1], 'code', 'forbidden') == 1 then\n"
    "      local why = 'max_audience: key \\'' .. (h[6] or '?') .. '\\' may reach ' .. cap .. ' residents; the audience goes beyond it, the rest are not sent (scope max_audience)'\n"
    "      redis.call('HSET', KEYS[1], 'reason', why)\n"
    "      xadd_kept(KEYS[3], " CR_EVENTS_MAXLEN ", 'job', ARGV[1], 'event', 'forbidden', 't_ms', ARGV[7], 'code', 'forbidden', 'error', why)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if #kept > 0 then\n"
    "  redis.call('XADD', KEYS[2], '*', 'job', ARGV[1], 'pos', h[4] or '0', 'ids', table.concat(kept, ','))\n"
    "  redis.call('HINCRBY', KEYS[1], 'targeted', #kept)\n"
    "  redis.call('HINCRBY', KEYS[1], 'batches', 1)\n"
    /* a job with escalation steps keeps its audience by position for them */
    "  if h[7] then redis.call('HSET', KEYS[1] .. ':aud', h[4] or '0', table.concat(kept, ',')) end\n"
    "end\n"
    "redis.call('EXPIRE', KEYS[6], ARGV[10])\n"
    "redis.call('HSET', KEYS[1], 'exp_src', ARGV[3], 'exp_cursor', ARGV[4], 'exp_step', step + 1)\n"
    "if h[3] == 'accepted' or h[3] == 'scheduled' then\n"
    "  redis.call('HSET', KEYS[1], 'state', 'sending', 'started_ms', ARGV[7])\n"
    "  xadd_kept(KEYS[3], " CR_EVENTS_MAXLEN ", 'job', ARGV[1], 'event', 'started', 't_ms', ARGV[7])\n"
    "end\n"
    "if ARGV[6] == '1' then\n"
    "  redis.call('HSET', KEYS[1], 'expanded', 1)\n"
    "  redis.call('UNLINK', KEYS[6]) -- the seen set is freed off the main thread\n"
    "  redis.call('XACK', KEYS[4], ARGV[8], ARGV[9])\n"
    "  complete(KEYS[1], KEYS[3], KEYS[5], ARGV[1], ARGV[7], ARGV[10])\n"
    "end\n"
    "return step + 1\n";

/* Every script that writes crier:receipts or crier:events trims it by the
 * audit-aware policy (audit_trim.h): trim_stream, xadd_kept. */
static const char trim_lua[] = CR_AUDIT_TRIM_LUA;

/* The record script. Numbers bound for a receipt stay strings: each one Lua
 * converts costs Redis a strtod or a printf. It reads the outcomes' bytes
 * (scripts.h) once: each one's position and first argument, and which keys
 * the call may write. Before it writes anything, every key it may write that
 * holds the wrong type fails the call as a whole (BADKEY), so nothing is half
 * written. */
static const char record_check_lua[] =
    "local A = ARGV\n"
    "local n, nk, dk = tonumber(A[7]), tonumber(A[8]), 9\n"
    "if #A[9] ~= n * " CR_STRINGIFY(CR_RECORD_BYTES) " then\n"
    "  return redis.error_reply('ERR record: ' .. #A[9] .. ' outcome bytes for ' .. n .. ' outcomes')\n"
    "end\n"
    "local rb = {string.byte(A[9], 1, -1)}\n"
    /* kind k's strings are A[dk + (k - 1) * " CR_STRINGIFY(CR_RECORD_KIND_STRINGS) " + 1 ..]; its ledger slot is the last */
    "local KSL = {}\n"
    "for k = 1, nk do KSL[k] = tonumber(A[dk + k * " CR_STRINGIFY(CR_RECORD_KIND_STRINGS) "]) end\n"
    "local pp = {}\n"
    "local first = dk + 1 + nk * " CR_STRINGIFY(CR_RECORD_KIND_STRINGS) "\n"
    "local cur, lo, hi, parks, texts = first, 4294967296, -1, false, false\n"
    "for i = 1, n do\n"
    "  local r = (i - 1) * " CR_STRINGIFY(CR_RECORD_BYTES) "\n"
    "  local fl, sl = rb[r + 1], KSL[rb[r + 6]]\n"
    "  if not sl then return redis.error_reply('ERR record: outcome ' .. i .. ' names no kind') end\n"
    "  local p = ((rb[r + 2] * 256 + rb[r + 3]) * 256 + rb[r + 4]) * 256 + rb[r + 5]\n"
    "  pp[i] = p\n"
    "  if p < lo then lo = p end\n"
    "  if p > hi then hi = p end\n"
    "  cur = cur + 4\n"
    "  if fl % 4 >= 2 then\n"
    "    cur = cur + 1\n"
    "    if sl == 1 or sl == 3 then texts = true end\n"
    "  end\n"
    "  if fl >= 4 then\n"
    "    parks = true\n"
    "    if fl % 8 >= 4 then cur = cur + 1 end\n"
    "    if fl >= 8 then cur = cur + 2 end\n"
    "  end\n"
    "end\n"
    "local want = {{KEYS[1], 'hash'}, {KEYS[2], 'string'}, {KEYS[3], 'stream'}, {KEYS[4], 'stream'}}\n"
    "if A[3] ~= '' then want[#want + 1] = {KEYS[5], 'stream'} end\n"
    "if parks then want[#want + 1] = {KEYS[9], 'zset'} end\n"
    "local bad = checktypes(want)\n"
    "local et\n"
    "if not bad then\n"
    "  et = redis.call('TYPE', KEYS[10])['ok']\n"
    "  if et ~= 'none' and et ~= 'hash' then bad = KEYS[10] .. ' is a ' .. et .. ', not a hash' end\n"
    "end\n"
    "if not bad and texts then bad = wrongtype(KEYS[11], 'hash') end\n"
    "if bad then return redis.error_reply('BADKEY ' .. bad) end\n";

/* What an outcome new to the ledger writes: its receipt, its suppression,
 * the resident's last sender, its counts (by kind, named once per call,
 * unless an early receipt changed its status). */
static const char record_lua[] =
    CR_TTD_LUA
    "local call = redis.call\n"
    "local supkey = {[0] = KEYS[6], KEYS[7], KEYS[8], KEYS[12]}\n"
    "local CHS = {[0] = '0', '1', '2', '3', '4'}\n"
    "local MASK = {[0] = 128, 64, 32, 16, 8, 4, 2, 1}\n"
    "local RK, jid = KEYS[3], A[1]\n"
    "local KM, KSEG = {}, {}\n"
    "for k = 1, nk do\n"
    "  local b = dk + (k - 1) * " CR_STRINGIFY(CR_RECORD_KIND_STRINGS) "\n"
    "  KM[k] = MASK[KSL[k]]\n"
    "  KSEG[k] = KSL[k] == 1 and A[b + 5] ~= '0' and A[b + 5]\n"
    "end\n"
    "local added, nlast = 0, 0\n"
    "local counts, kc, last = {}, {}, {}\n"
    "local early = et == 'hash'\n"
    "local function count(st, cn, code, seg, c)\n"
    "  counts[st] = (counts[st] or 0) + c\n"
    "  if cn ~= '' then local ck = st .. ':' .. cn; counts[ck] = (counts[ck] or 0) + c end\n"
    /* why messages did not arrive, counted per status and provider code for the dashboard */
    "  if st ~= 'sent' and st ~= 'delivered' and code ~= '' then\n"
    "    local rk = 'reason:' .. st .. ':' .. code\n"
    "    counts[rk] = (counts[rk] or 0) + c\n"
    "  end\n"
    "  if seg and (st == 'sent' or st == 'delivered') then\n"
    "    counts['sms_segments'] = (counts['sms_segments'] or 0) + tonumber(seg) * c\n"
    "  end\n"
    "end\n"
    "local function outcome(i, o)\n"
    "  local r = (i - 1) * " CR_STRINGIFY(CR_RECORD_BYTES) "\n"
    "  local fl, k = rb[r + 1], rb[r + 6]\n"
    "  local b = dk + (k - 1) * " CR_STRINGIFY(CR_RECORD_KIND_STRINGS) "\n"
    "  local slot = KSL[k]\n"
    "  local sub, pos, ch = A[o], A[o + 1], CHS[slot]\n"
    "  local st = A[b + 2]\n"
    "    if early and st == 'sent' and ch ~= '" CR_STRINGIFY(CR_LEDGER_SKIPPED) "' then\n"
    "      local k = pos .. ':' .. ch\n"
    "      local e = redis.call('HGET', KEYS[10], k)\n"
    "      if e then\n"
    "        st = e; redis.call('HDEL', KEYS[10], k)\n"
    /* the message has its receipt, as a late one marks it (webhooks.c): a
     * later status for it (WhatsApp's read) is a duplicate, not a second one */
    "        redis.call('SETBIT', KEYS[1] .. ':receipts', pp[i] * 8 + slot, 1)\n"
    "        if tonumber(ARGV[6]) > 0 then redis.call('EXPIRE', KEYS[1] .. ':receipts', ARGV[6]) end\n"
    "      end\n"
    /* an early delivery reaches the resident as a late one does (webhooks.c) */
    "      if e == 'delivered' then\n"
    "        redis.call('SETBIT', KEYS[1] .. ':reached', tonumber(pos), 1)\n"
    "        ttd(KEYS[1], tonumber(ch), tonumber(ARGV[5]))\n"
    "      end\n"
    "    end\n"
    "  local cn, code, seg = A[b + 6], A[b + 4], KSEG[k]\n"
    "  if st == A[b + 2] then kc[k] = (kc[k] or 0) + 1 else count(st, cn, code, seg, 1) end\n"
    "  if seg then\n"
    "    call('XADD', RK, '*', 'job', jid, 'sub', sub, 'pos', pos, 'channel', cn, 'provider', A[b + 1],\n"
    "      'status', st, 'attempt', A[b + 3], 'code', code, 'latency_us', A[o + 2], 'provider_id', A[o + 3],\n"
    "      'segments', seg)\n"
    "  else\n"
    "    call('XADD', RK, '*', 'job', jid, 'sub', sub, 'pos', pos, 'channel', cn, 'provider', A[b + 1],\n"
    "      'status', st, 'attempt', A[b + 3], 'code', code, 'latency_us', A[o + 2], 'provider_id', A[o + 3])\n"
    "  end\n"
    "  if fl % 4 >= 2 then\n"
    "    local addr = A[o + 4]\n"
    "    if fl % 2 == 1 and addr ~= '' and supkey[slot] and not wrongtype(supkey[slot], 'set') then call('SADD', supkey[slot], addr) end\n"
    "    if (slot == 1 or slot == 3) and addr ~= '' and (st == 'sent' or st == 'delivered') then\n"
    "      last[nlast + 1] = slot == 3 and 'whatsapp:' .. addr or addr\n"
    "      last[nlast + 2] = jid .. '/' .. pos .. '/' .. sub\n"
    "      nlast = nlast + 2\n"
    "    end\n"
    "  end\n"
    "  added = added + 1\n"
    "end\n";

/* Every outcome's ledger bit: where the call's positions lie close together
 * (a batch's do), through the ledger's bytes read with one GETRANGE and
 * written back with one SETRANGE, else one BITFIELD (a retry batch's may lie
 * anywhere in the audience). Parks and unparks come first and see the
 * ledger as the call found it; an outcome is new when its bit was not set
 * before it, as BITFIELD SET answers. A call without parks or unparks (the
 * usual one) does it all in one pass. */
static const char record_new_lua[] =
    "local led, base\n"
    "if n > 0 and hi - lo < 4096 then\n"
    "  local have = call('GETRANGE', KEYS[2], lo, hi)\n"
    "  led = {string.byte(have, 1, -1)}\n"
    "  for x = #have + 1, hi - lo + 1 do led[x] = 0 end\n"
    "  base = lo - 1\n"
    "end\n"
    "if led and not parks then\n"
    "  local o, changed = first, false\n"
    "  for i = 1, n do\n"
    "    local r = (i - 1) * " CR_STRINGIFY(CR_RECORD_BYTES) "\n"
    "    local x, m = pp[i] - base, KM[rb[r + 6]]\n"
    "    local v = led[x]\n"
    "    if v % (m + m) < m then\n"
    "      led[x] = v + m; changed = true\n"
    "      outcome(i, o)\n"
    "    end\n"
    "    o = o + 4\n"
    "    if rb[r + 1] % 4 >= 2 then o = o + 1 end\n"
    "  end\n"
    "  if changed then call('SETRANGE', KEYS[2], lo, string.char(unpack(led))) end\n"
    "elseif n > 0 then\n"
    "  local live, lo_, nl, o = {}, {}, 0, first\n"
    "  for i = 1, n do\n"
    "    local r = (i - 1) * " CR_STRINGIFY(CR_RECORD_BYTES) "\n"
    "    local fl = rb[r + 1]\n"
    "    local x = o + 4\n"
    "    if fl % 4 >= 2 then x = x + 1 end\n"
    "    local unpark\n"
    "    if fl % 8 >= 4 then unpark = A[x]; x = x + 1 end\n"
    "    if fl >= 8 then\n"
    "      if not unpark then\n"
    /* written again after a reconnect: the member counts once, and a message
     * recorded since (its ledger bit set) is not parked again */
    "        local m, was = KM[rb[r + 6]]\n"
    "        if led then was = led[pp[i] - base] % (m + m) >= m\n"
    "        else was = call('GETBIT', KEYS[2], pp[i] * 8 + KSL[rb[r + 6]]) == 1 end\n"
    "        if not was and call('ZADD', KEYS[9], 'NX', A[x], A[x + 1]) == 1 then\n"
    "          counts['parked'] = (counts['parked'] or 0) + 1\n"
    "        end\n"
    "      elseif call('ZREM', KEYS[9], unpark) == 1 then\n"
    "        call('ZADD', KEYS[9], A[x], A[x + 1])\n"
    "      end\n"
    "    else\n"
    "      local ok = true\n"
    "      if unpark then\n"
    "        if call('ZREM', KEYS[9], unpark) == 1 then counts['parked'] = (counts['parked'] or 0) - 1 else ok = false end\n"
    "      end\n"
    "      if ok then nl = nl + 1; live[nl] = i; lo_[nl] = o end\n"
    "    end\n"
    "    o = x\n"
    "    if fl >= 8 then o = o + 2 end\n"
    "  end\n"
    "  local was = {}\n"
    "  if nl > 0 and led then\n"
    "    local changed = false\n"
    "    for j = 1, nl do\n"
    "      local i = live[j]\n"
    "      local x, m = pp[i] - base, KM[rb[(i - 1) * " CR_STRINGIFY(CR_RECORD_BYTES) " + 6]]\n"
    "      local v = led[x]\n"
    "      if v % (m + m) >= m then was[j] = 1 else led[x] = v + m; was[j] = 0; changed = true end\n"
    "    end\n"
    "    if changed then call('SETRANGE', KEYS[2], lo, string.char(unpack(led))) end\n"
    "  elseif nl > 0 then\n"
    "    local bits = {}\n"
    "    for j = 1, nl do\n"
    "      local i = live[j]\n"
    "      bits[#bits + 1] = 'SET'; bits[#bits + 1] = 'u1'\n"
    "      bits[#bits + 1] = pp[i] * 8 + KSL[rb[(i - 1) * " CR_STRINGIFY(CR_RECORD_BYTES) " + 6]]; bits[#bits + 1] = '1'\n"
    "    end\n"
    "    was = call('BITFIELD', KEYS[2], unpack(bits))\n"
    "  end\n"
    "  for j = 1, nl do\n"
    "    if was[j] == 0 then outcome(live[j], lo_[j]) end\n"
    "  end\n"
    "end\n"
    "for k, c in pairs(kc) do\n"
    "  local b = dk + (k - 1) * " CR_STRINGIFY(CR_RECORD_KIND_STRINGS) "\n"
    "  count(A[b + 2], A[b + 6], A[b + 4], KSEG[k], c)\n"
    "end\n"
    "if added > 0 then trim_stream(KEYS[3], A[4]) end\n";

/* The record script's second half: counters, the plan check, the ack. */
static const char record_tail_lua[] =
    "if #last > 0 then redis.call('HSET', KEYS[11], unpack(last)) end\n"
    "for k, v in pairs(counts) do\n"
    "  if v ~= 0 then redis.call('HINCRBY', KEYS[1], k, v) end\n"
    "end\n"
    /* The batch is acknowledged only if every (position, channel) it planned
     * has its ledger bit: a write Redis lost is found here, in Redis. */
    "if ARGV[3] ~= '' and ARGV[cur + 1] then\n"
    "  local first, plan = tonumber(ARGV[cur]), ARGV[cur + 1]\n"
    "  local have = redis.call('GETRANGE', KEYS[2], first, first + #plan - 1)\n"
    "  local miss = 0\n"
    "  for i = 1, #plan do\n"
    "    local lack = bit.band(string.byte(plan, i), bit.bnot(string.byte(have, i) or 0))\n"
    "    while lack ~= 0 do miss = miss + 1; lack = bit.band(lack, lack - 1) end\n"
    "  end\n"
    "  if miss > 0 then\n"
    "    redis.call('HINCRBY', KEYS[1], 'repaired', miss)\n"
    "    return {added, miss, have}\n"
    "  end\n"
    "end\n"
    "if ARGV[3] ~= '' and redis.call('XACK', KEYS[5], ARGV[2], ARGV[3]) == 1 then\n"
    "  local done = redis.call('HINCRBY', KEYS[1], 'batches_done', 1)\n"
    "  redis.call('XDEL', KEYS[5], ARGV[3])\n"
    "  if done % 20 == 0 then\n"
    "    local p = redis.call('HMGET', KEYS[1], 'batches', 'targeted', 'sent', 'delivered', 'failed')\n"
    "    xadd_kept(KEYS[4], " CR_EVENTS_MAXLEN ", 'job', ARGV[1], 'event', 'progress', 't_ms', ARGV[5],\n"
    "      'batches_done', done, 'batches', p[1] or '0', 'targeted', p[2] or '0', 'sent', p[3] or '0',\n"
    "      'delivered', p[4] or '0', 'failed', p[5] or '0')\n"
    "  end\n"
    "end\n"
    "complete(KEYS[1], KEYS[4], KEYS[2], ARGV[1], ARGV[5], ARGV[6])\n"
    "return added\n";

static const char claim_lua[] =
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])\n"
    "for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], m) end\n"
    "local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')\n"
    "return {due, nxt[2] or '', redis.call('ZCARD', KEYS[1])}\n";

static const char due_lua[] =
    "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])\n"
    "local n = 0\n"
    "for _, id in ipairs(ids) do\n"
    "  if redis.call('ZREM', KEYS[1], id) == 1 then\n"
    "    local job = ARGV[3] .. 'job:' .. id\n"
    "    local jt = redis.call('TYPE', job)['ok']\n"
    "    if jt ~= 'hash' then\n"
    "      -- gone, or not crier's: nothing to start (the job's own entry said why when it was posted)\n"
    "    elseif redis.call('HGET', job, 'state') == 'cancelling' then\n"
    "      redis.call('HSET', job, 'state', 'cancelled', 'completed_ms', ARGV[1], 'messages', 0)\n"
    "      xadd_kept(KEYS[3], " CR_EVENTS_MAXLEN ", 'job', id, 'event', 'cancelled', 't_ms', ARGV[1], 'messages', 0)\n"
    "    else\n"
    "      local e = redis.call('XADD', KEYS[2], '*', 'resume', id)\n"
    "      redis.call('HSET', job, 'entry', e, 'state', 'accepted')\n"
    "      xadd_kept(KEYS[3], " CR_EVENTS_MAXLEN ", 'job', id, 'event', 'due', 't_ms', ARGV[1])\n"
    "      n = n + 1\n"
    "    end\n"
    "  end\n"
    "end\n"
    /* a scheduled job cancelled by hand (state set to cancelling) ends now, not
     * at its send_at: the soonest 256 are looked at on every run */
    "for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, 255)) do\n"
    "  local job = ARGV[3] .. 'job:' .. id\n"
    "  if redis.call('TYPE', job)['ok'] == 'hash' and redis.call('HGET', job, 'state') == 'cancelling' then\n"
    "    redis.call('ZREM', KEYS[1], id)\n"
    "    redis.call('HSET', job, 'state', 'cancelled', 'completed_ms', ARGV[1], 'messages', 0)\n"
    "    xadd_kept(KEYS[3], " CR_EVENTS_MAXLEN ", 'job', id, 'event', 'cancelled', 't_ms', ARGV[1], 'messages', 0)\n"
    "  end\n"
    "end\n"
    "local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')\n"
    "return {n, nxt[2] or ''}\n";

/* A job step met data of the wrong type: the job ends "failed" with the
 * reason, unless the key is fine again (a race with whoever fixed it). */
static const char fail_lua[] =
    "local reason = ARGV[6]\n"
    "if ARGV[5] ~= '' then\n"
    "  local w = wrongtype(KEYS[5], ARGV[5])\n"
    "  if not w then return {0, redis.call('TYPE', KEYS[5])['ok']} end\n"
    "  reason = ARGV[6] .. ' ' .. w\n"
    "end\n"
    "if ARGV[3] ~= '' and not wrongtype(KEYS[3], 'stream') then redis.call('XACK', KEYS[3], ARGV[4], ARGV[3]) end\n"
    "if wrongtype(KEYS[1], 'hash') or redis.call('EXISTS', KEYS[1]) == 0 then return {-1, reason} end\n"
    "if not wrongtype(KEYS[4], 'zset') then redis.call('ZREM', KEYS[4], ARGV[1]) end\n"
    "if failjob(KEYS[1], KEYS[2], ARGV[1], ARGV[2], reason, ARGV[7]) == 0 then\n"
    "  return {2, redis.call('HGET', KEYS[1], 'error') or reason}\n"
    "end\n"
    "return {1, reason}\n";

/* The account-wide token bucket: the same arithmetic as limiter.c, in
 * thousandths of a token, shared by every crierd. */
static const char tokens_lua[] =
    "local rate, burst, now, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local cap = burst * 1000\n"
    "local h = redis.call('HMGET', KEYS[1], 'milli', 'ts')\n"
    "local milli, ts = tonumber(h[1] or cap), tonumber(h[2] or now)\n"
    "if now > ts then milli = math.min(cap, milli + (now - ts) * rate); ts = now end\n"
    "local got = math.min(want, math.floor(milli / 1000))\n"
    "milli = milli - got * 1000\n"
    "redis.call('HSET', KEYS[1], 'milli', milli, 'ts', ts)\n"
    "redis.call('PEXPIRE', KEYS[1], 60000)\n"
    "local wait = 0\n"
    "if got == 0 then wait = math.ceil((1000 - milli) / rate) end\n"
    "return {got, wait}\n";

/* The messaging tier: a sorted set of the addresses a number started
 * conversations with, scored by the last time, trimmed to the moving window;
 * it never holds more than the limit. */
static const char tier_lua[] =
    "local now, win, lim = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - win)\n"
    "if redis.call('ZSCORE', KEYS[1], ARGV[4]) or redis.call('ZCARD', KEYS[1]) < lim then\n"
    "  redis.call('ZADD', KEYS[1], now, ARGV[4])\n"
    "  redis.call('PEXPIRE', KEYS[1], win)\n"
    "  return {1, 0}\n"
    "end\n"
    "local o = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')\n"
    "local wait = tonumber(o[2]) + win - now\n"
    "if wait < 1 then wait = 1 end\n"
    "return {0, wait}\n";

/* Each script is its parts joined, the shared completion function first where
 * it ends jobs (C compilers need only take string literals of 4095 bytes). */
#define SCRIPT_MAX 16384
#define SCRIPT_PARTS 7
static const char *const script_parts[CR_SCRIPT__COUNT][SCRIPT_PARTS] = {
    {trim_lua, guard_lua, accept_lua, NULL, NULL, NULL, NULL},
    {trim_lua, guard_lua, complete_lua, expand_lua, NULL, NULL, NULL},
    {trim_lua, guard_lua, complete_lua, record_check_lua, record_lua, record_new_lua,
     record_tail_lua},
    {claim_lua, NULL, NULL, NULL, NULL, NULL, NULL},
    {trim_lua, due_lua, NULL, NULL, NULL, NULL, NULL},
    {tokens_lua, NULL, NULL, NULL, NULL, NULL, NULL},
    {trim_lua, guard_lua, fail_lua, NULL, NULL, NULL, NULL},
    {trim_lua, guard_lua, complete_lua, cr_escalate_lua, NULL, NULL, NULL},
    {tier_lua, NULL, NULL, NULL, NULL, NULL, NULL},
    {cr_confirm_lua, cr_confirm_call_lua, NULL, NULL, NULL, NULL, NULL}};
static char script_text[CR_SCRIPT__COUNT][SCRIPT_MAX];
static char script_sha[CR_SCRIPT__COUNT][41];

static void hash_scripts(void)
{
    unsigned char md[SHA_DIGEST_LENGTH];
    int s;
    int i;

    if (script_sha[0][0])
        return;
    for (s = 0; s < CR_SCRIPT__COUNT; s++) {
        size_t n = 0;

        for (i = 0; i < SCRIPT_PARTS && script_parts[s][i]; i++) {
            size_t len = strlen(script_parts[s][i]);

            if (n + len >= SCRIPT_MAX) {
                /* the parts are constants: only a change to this file gets here */
                cr_error("redis: script %d is over %d bytes", s, SCRIPT_MAX);
                abort();
            }
            memcpy(script_text[s] + n, script_parts[s][i], len);
            n += len;
        }
        script_text[s][n] = '\0';
        SHA1((const unsigned char *)script_text[s], n, md);
        for (i = 0; i < SHA_DIGEST_LENGTH; i++)
            snprintf(script_sha[s] + 2 * i, 3, "%02x", md[i]);
    }
}

/* SCRIPT LOADs sent and not answered: a NOSCRIPT answer loads the scripts
 * again only when none is under way (one loop, one thread). */
static size_t loads_pending;

static void on_loaded(struct cr_redis *r, redisReply *reply, void *ud)
{
    (void)r;
    loads_pending--;
    if (reply && cr_reply_is_error(reply))
        cr_error("redis: SCRIPT LOAD of script %d failed: %s", (int)(intptr_t)ud,
                 reply->str ? reply->str : "?");
}

void cr_scripts_load(struct cr_redis *r)
{
    int s;

    hash_scripts();
    for (s = 0; s < CR_SCRIPT__COUNT; s++) {
        if (cr_redis_cmd(r, on_loaded, (void *)(intptr_t)s, 0, "SCRIPT LOAD %s",
                         script_text[s]) == 0)
            loads_pending++;
    }
}

struct call_ctx {
    cr_redis_cb cb;
    void *ud;
};

/* A server without the scripts (its SCRIPT LOAD was refused while it was
 * still loading its data, or SCRIPT FLUSH) answers NOSCRIPT: load them again,
 * so that the caller's retry finds them. */
static void on_called(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct call_ctx cc = *(struct call_ctx *)ud;

    free(ud);
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && reply->str != NULL &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0 && loads_pending == 0) {
        cr_warn("redis: the server does not have crier's scripts (restarted?); loading them "
                "again");
        cr_scripts_load(r);
    }
    cc.cb(r, reply, cc.ud);
}

int cr_script_call(struct cr_redis *r, enum cr_script s, int nkeys, int argc, const char **argv,
                   const size_t *lens, cr_redis_cb cb, void *ud)
{
    const char *av[CR_SCRIPT_MAX_ARGS];
    size_t al[CR_SCRIPT_MAX_ARGS];
    char nk[16];
    struct call_ctx *cc;
    int rc;
    int i;

    if (argc + 3 > CR_SCRIPT_MAX_ARGS)
        return CR_ETOOBIG;
    hash_scripts();
    snprintf(nk, sizeof(nk), "%d", nkeys);
    av[0] = "EVALSHA";
    al[0] = 7;
    av[1] = script_sha[s];
    al[1] = 40;
    av[2] = nk;
    al[2] = strlen(nk);
    for (i = 0; i < argc; i++) {
        av[3 + i] = argv[i];
        al[3 + i] = lens ? lens[i] : strlen(argv[i]);
    }
    if (cb == NULL)
        return cr_redis_argv(r, NULL, NULL, 0, argc + 3, av, al);
    cc = malloc(sizeof(*cc));
    if (cc == NULL)
        return CR_ENOMEM;
    cc->cb = cb;
    cc->ud = ud;
    rc = cr_redis_argv(r, on_called, cc, 0, argc + 3, av, al);
    if (rc != 0)
        free(cc);
    return rc;
}

/* A cr_script_call_once under way: its arguments, kept for the EVAL. */
struct once_ctx {
    cr_redis_cb cb;
    void *ud;
    enum cr_script s;
    int nkeys;
    int argc;
    int evaled;
    const char *argv[]; /* argc pointers, then the strings they point to */
};

/* on_called has already sent the scripts again after a NOSCRIPT. */
static void on_once(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct once_ctx *oc = ud;

    if (!oc->evaled && reply != NULL && reply->type == REDIS_REPLY_ERROR && reply->str != NULL &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        const char *av[CR_SCRIPT_MAX_ARGS];
        char nk[16];
        int i;

        snprintf(nk, sizeof(nk), "%d", oc->nkeys);
        av[0] = "EVAL";
        av[1] = script_text[oc->s];
        av[2] = nk;
        for (i = 0; i < oc->argc; i++)
            av[3 + i] = oc->argv[i];
        oc->evaled = 1;
        if (cr_redis_argv(r, on_once, oc, 0, oc->argc + 3, av, NULL) == 0)
            return;
    }
    oc->cb(r, reply, oc->ud);
    free(oc);
}

int cr_script_call_once(struct cr_redis *r, enum cr_script s, int nkeys, int argc,
                        const char **argv, cr_redis_cb cb, void *ud)
{
    struct once_ctx *oc;
    size_t total = 0;
    char *p;
    int rc;
    int i;

    if (argc + 3 > CR_SCRIPT_MAX_ARGS)
        return CR_ETOOBIG;
    for (i = 0; i < argc; i++)
        total += strlen(argv[i]) + 1;
    oc = malloc(sizeof(*oc) + (size_t)argc * sizeof(oc->argv[0]) + total);
    if (oc == NULL)
        return CR_ENOMEM;
    oc->cb = cb;
    oc->ud = ud;
    oc->s = s;
    oc->nkeys = nkeys;
    oc->argc = argc;
    oc->evaled = 0;
    p = (char *)&oc->argv[argc];
    for (i = 0; i < argc; i++) {
        size_t len = strlen(argv[i]) + 1;

        memcpy(p, argv[i], len);
        oc->argv[i] = p;
        p += len;
    }
    rc = cr_script_call(r, s, nkeys, argc, oc->argv, NULL, on_once, oc);
    if (rc != 0)
        free(oc);
    return rc;
}
