-- Shared by the wrk scripts of bench/keys-vs-etcd.sh: when WRK_LATENCIES names a file, wrk's
-- whole latency histogram ("microseconds count" per line) is written there at the end, so that
-- the halves of a side can be pooled into one distribution before taking percentiles.
function done(summary, latency, requests)
  local path = os.getenv("WRK_LATENCIES")
  if not path then return end
  local f = assert(io.open(path, "w"))
  for i = 1, #latency do
    local us, count = latency(i)
    if count and count > 0 then f:write(us, " ", count, "\n") end
  end
  f:close()
end
