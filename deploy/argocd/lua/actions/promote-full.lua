-- `sluice promote --full`: skip every remaining step and analysis.
local status = obj.status
if status == nil or status.stableRS == nil then
  error("the Sluice controller has not reported on this rollout yet", 0)
end
if status.abort == true then
  error("the rollout is aborted; run retry to start its steps again", 0)
end
if status.currentPodHash == status.stableRS then
  error("the rollout is not mid-rollout: nothing to promote", 0)
end
status.promoteFull = true
return obj
