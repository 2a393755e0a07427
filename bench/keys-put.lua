-- wrk script: POST /api/45/storage/keys/bench/<run>/<thread>/<n> with a 256-byte password
-- (Content-Type application/x-rundeck-data-password): a fresh path per request, so every
-- request is a create (a guarded Raft write of a value sealed before it is proposed).
-- Environment: STEWARD_TOKEN (an API token), RUN (a prefix unique to this run).
local token = os.getenv("STEWARD_TOKEN") or ""
local run = os.getenv("RUN") or tostring(os.time())
local value = string.rep("x", 256)
local next_id = 0

-- Runs in the main state once per thread: give each thread its own id, so paths never collide.
function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
end

counter = 0
request = function()
  counter = counter + 1
  local path = "/api/45/storage/keys/bench/" .. run .. "/" .. tostring(tid) .. "/" .. counter
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/x-rundeck-data-password",
    ["X-Rundeck-Auth-Token"] = token,
  }, value)
end

-- The latency histogram for pooling (bench/latencies.lua).
dofile((os.getenv("BENCH_DIR") or "bench") .. "/latencies.lua")
