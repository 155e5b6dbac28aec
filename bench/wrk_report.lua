-- wrk script for `make bench`: optional rotation through distinct bearer tokens, and a
-- machine-readable summary line (latencies in microseconds) for the harness to parse.
local token_file = os.getenv("BENCH_TOKENS_FILE")

if token_file and token_file ~= "" then
  local tokens, index = {}, 0

  function init(args)
    for line in io.lines(token_file) do
      if line ~= "" then tokens[#tokens + 1] = line end
    end
  end

  function request()
    index = index % #tokens + 1
    local headers = {}
    for name, value in pairs(wrk.headers) do headers[name] = value end
    headers["Authorization"] = "Bearer " .. tokens[index]
    return wrk.format(nil, nil, headers)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_s":%.6f,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"http_errors":%d,"timeouts":%d,' ..
    '"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration / 1e6, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
