-- POST a chat completion (the same body for the gateway and the nginx mock; nginx ignores it).
-- Set by bench/run.py through the environment:
--   BENCH_KEY     the gateway key (sent as Authorization: Bearer <key>)
--   BENCH_MODEL   the model to ask for (bench-json or bench-sse in bench/config)
--   BENCH_STREAM  "1" for stream: true
--   BENCH_HEADER  optional extra header "name: value" (e.g. "x-gateway-cache: no-store")
-- At the end it prints one line, BENCH_RESULT {json}, with exact percentiles and error counts.

local key = os.getenv("BENCH_KEY") or ""
local model = os.getenv("BENCH_MODEL") or "bench-json"
local stream = os.getenv("BENCH_STREAM") == "1"

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
local extra = os.getenv("BENCH_HEADER") or ""
local name, value = extra:match("^([^:]+):%s*(.*)$")
if name then wrk.headers[name] = value end
wrk.body = string.format(
  '{"model":"%s","messages":[{"role":"system","content":"You are terse."},' ..
  '{"role":"user","content":"Say hello in one short sentence."}],' ..
  '"stream":%s,"max_tokens":64,"temperature":0.2}',
  model, stream and "true" or "false")

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
