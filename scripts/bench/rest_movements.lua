-- POST /api/v1/movements: batches of 100 receipts, unique idempotency keys, 10,000 SKUs.
local counter = 0
local thread_id = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  thread_id = tid
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local parts = {}
  for i = 1, 100 do
    counter = counter + 1
    local sku = (counter * 7919 + thread_id * 31) % 10000
    parts[i] = string.format('{"sku":"SKU-%05d","idempotency_key":"w%d-%d","source":"wrk","type":"receipt","location":"WH-1","quantity":1}', sku, thread_id, counter)
  end
  return wrk.format(nil, "/api/v1/movements", nil, "[" .. table.concat(parts, ",") .. "]")
end
response = function(status, headers, body)
  if status >= 300 then
    print("status " .. status .. ": " .. body)
  end
end
