-- `sluice promote`: the current step counts as done (status.promotedStep = currentStepIndex). Naming
-- the index, not "next", keeps a repeated click from skipping two steps.
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
local steps = {}
if obj.spec.strategy ~= nil and obj.spec.strategy.canary ~= nil and obj.spec.strategy.canary.steps ~= nil then
  steps = obj.spec.strategy.canary.steps
end
local index = status.currentStepIndex
if index == nil then
  index = 0
end
if index < #steps then
  status.promotedStep = index
end
return obj
