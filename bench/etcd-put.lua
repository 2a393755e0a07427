-- Copied from the shared benchmark kit (shared/bench/etcd-put.lua) so the comparison runs from the repo.
-- wrk script: POST /v3/kv/put with a fresh key each request and a 256-byte value
counter = 0
local value = string.rep("x", 256)
local function b64(s)
  local b='ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
  return ((s:gsub('.', function(x)
    local r,b='',x:byte()
    for i=8,1,-1 do r=r..(b%2^i-b%2^(i-1)>0 and '1' or '0') end
    return r;
  end)..'0000'):gsub('%d%d?%d?%d?%d?%d?', function(x)
    if (#x < 6) then return '' end
    local c=0
    for i=1,6 do c=c+(x:sub(i,i)=='1' and 2^(6-i) or 0) end
    return b:sub(c+1,c+1)
  end)..({ '', '==', '=' })[#s%3+1])
end
local v64 = b64(value)
request = function()
  counter = counter + 1
  local body = '{"key":"' .. b64("bench/" .. counter) .. '","value":"' .. v64 .. '"}'
  return wrk.format("POST", "/v3/kv/put", {["Content-Type"]="application/json"}, body)
end

-- The latency histogram for pooling (bench/latencies.lua).
dofile((os.getenv("BENCH_DIR") or "bench") .. "/latencies.lua")
