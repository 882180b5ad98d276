-- wrk script for bench/httpload.py: a random item per request, and one JSON
-- summary line (prefixed WRKJSON) at the end. Latencies are microseconds.
local rows = tonumber(os.getenv("DMP_BENCH_ROWS") or "1000")

request = function()
  return wrk.format("GET", "/item/" .. math.random(1, rows) .. "/")
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,'
      .. '"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
