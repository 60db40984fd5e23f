-- wrk script: requests to paths read from a file, one per line, each thread cycling through its
-- own slice (so a DELETE never repeats an id), optionally with a JSON body. Arguments after "--":
-- METHOD PATHS_FILE THREADS [BODY]. Prints requests, rps and p50/p95/p99 as one JSON line.
local counter = 1

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  method = args[1]
  local file = args[2]
  local threads = tonumber(args[3])
  body = args[4]
  paths = {}
  for line in io.lines(file) do paths[#paths + 1] = line end
  local per = math.floor(#paths / threads)
  first = (id - 1) * per + 1
  last = first + per - 1
  index = first
  headers = {}
  if body then headers["Content-Type"] = "application/json" end
  local key = os.getenv("BENCH_API_KEY")
  if key and key ~= "" then headers["X-API-Key"] = key end
end

function request()
  local path = paths[index]
  index = index + 1
  if index > last then index = first end
  return wrk.format(method, path, headers, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "duration_s": %.3f, "rps": %.1f, "p50_ms": %.2f, "p95_ms": %.2f, ' ..
    '"p99_ms": %.2f, "errors": %d, "non2xx": %d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
