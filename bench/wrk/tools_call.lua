-- wrk script for bench/run: authenticated `tools/call greet_user`, every request its own JSON-RPC id
-- (unique across wrk threads: a stateful MCP session routes replies by id).
--
-- Environment: BENCH_TOKEN (required), BENCH_SESSION (Mcp-Session-Id, stateful rows only),
-- BENCH_PATH (default "/"); BENCH_TOOL, BENCH_ARGUMENTS (JSON) and BENCH_EXPECT (text every answer
-- holds) for another tool than greet_user. Responses whose body lacks the expected text are
-- counted as bad; done() prints one JSON line starting with BENCH_RESULT for the harness.

local token = os.getenv("BENCH_TOKEN")
local session = os.getenv("BENCH_SESSION")
local path = os.getenv("BENCH_PATH") or "/"
local tool = os.getenv("BENCH_TOOL") or "greet_user"
local arguments = os.getenv("BENCH_ARGUMENTS") or '{"name":"bench"}'
local expect = os.getenv("BENCH_EXPECT") or "welcome to Scalekit!"

local threads = {}
local next_thread = 0

function setup(thread)
  next_thread = next_thread + 1
  thread:set("thread_id", next_thread)
  table.insert(threads, thread)
end

local counter = 0
bad = 0 -- global: done() reads it per thread with thread:get
local headers = {
  ["Authorization"] = "Bearer " .. token,
  ["Content-Type"] = "application/json",
  ["Accept"] = "application/json, text/event-stream",
  ["MCP-Protocol-Version"] = "2025-06-18",
}
if session and session ~= "" then
  headers["Mcp-Session-Id"] = session
end

function request()
  counter = counter + 1
  local id = thread_id * 1000000000 + counter
  local body = '{"jsonrpc":"2.0","id":' .. id
    .. ',"method":"tools/call","params":{"name":"' .. tool .. '","arguments":' .. arguments .. '}}'
  return wrk.format("POST", path, headers, body)
end

function response(status, _, body)
  if status ~= 200 or not string.find(body, expect, 1, true) then
    bad = bad + 1
  end
end

function done(summary, latency, _)
  local bad_total = 0
  for _, thread in ipairs(threads) do
    bad_total = bad_total + (thread:get("bad") or 0)
  end
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bad":%d,"socket_errors":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, bad_total,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
