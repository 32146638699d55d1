-- `sluice retry`: clear abort but keep abortedAt; the controller reads that as "start the steps again".
local status = obj.status
if status == nil or status.abort ~= true then
  error("the rollout is not aborted: nothing to retry", 0)
end
status.abort = nil
return obj
