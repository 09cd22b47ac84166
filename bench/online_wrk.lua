-- online_wrk.lua: wrk script for bench/online_bench.py.
--
-- POSTs one fixed JSON body (read from a file) with Content-Type
-- application/json, or sends a plain GET when no body file is given, and
-- prints one JSON line with the result when the run ends.
--
--   wrk -t1 -c32 -d10s --latency -s bench/online_wrk.lua \
--       http://127.0.0.1:6566/get-online-features -- /tmp/req_1x50.json
--   wrk -t1 -c32 -d10s -s bench/online_wrk.lua http://127.0.0.1:6566/health
--
-- Every connection repeats the same request (keep-alive, one request in flight
-- per connection). Latencies are wrk's: from writing the request to reading
-- the whole response, in microseconds.

function init(args)
    local path = args[1]
    if path ~= nil and path ~= "" then
        local f = assert(io.open(path, "rb"))
        wrk.body = f:read("*a")
        f:close()
        wrk.method = "POST"
        wrk.headers["Content-Type"] = "application/json"
    else
        wrk.method = "GET"
    end
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        '\nWRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,' ..
        '"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,"mean_us":%.1f,' ..
        '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d}\n',
        summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
        e.status, e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency:percentile(99.9), latency.max))
end
