-- `sluice abort`: all traffic back to the stable revision. The controller records abortReason
-- Requested, so a GitSync does not block the revision because a person stopped it.
local status = obj.status
if status == nil or status.stableRS == nil then
  error("the Sluice controller has not reported on this rollout yet", 0)
end
if status.currentPodHash == status.stableRS then
  error("the rollout is not mid-rollout: there is no canary to abort", 0)
end
status.abort = true
return obj
