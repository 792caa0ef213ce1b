-- wrk script for the benchmark: POSTs one request crier sends (the Twilio
-- Messages call by default) over and over, keep-alive. The body and headers come
-- from the environment so that they are exactly what crier sent in the same run:
--   BENCH_BODY, BENCH_AUTH (Authorization value), BENCH_CTYPE (Content-Type).
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or ""
wrk.headers["Content-Type"] = os.getenv("BENCH_CTYPE") or "application/x-www-form-urlencoded"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then
   wrk.headers["Authorization"] = auth
end
