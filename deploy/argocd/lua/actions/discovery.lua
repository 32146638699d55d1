-- Which Rollout actions make sense now; the same checks `sluice promote/abort/retry` make.
local actions = {}
actions["promote"] = {["disabled"] = true}
actions["promote-full"] = {["disabled"] = true}
actions["abort"] = {["disabled"] = true}
actions["retry"] = {["disabled"] = true}

local status = obj.status
-- No stable revision yet, or a status older than the spec: the controller has not caught up, and a
-- protocol field written now could be reset a moment later.
if status == nil or status.stableRS == nil then
  return actions
end
if obj.metadata.generation ~= nil and status.observedGeneration ~= obj.metadata.generation then
  return actions
end
if status.abort == true then
  actions["retry"]["disabled"] = false
  return actions
end
if status.currentPodHash == status.stableRS then
  -- Steady: the stable revision runs the current template; nothing to promote or abort.
  return actions
end
actions["abort"]["disabled"] = false
actions["promote-full"]["disabled"] = false
local steps = {}
if obj.spec.strategy ~= nil and obj.spec.strategy.canary ~= nil and obj.spec.strategy.canary.steps ~= nil then
  steps = obj.spec.strategy.canary.steps
end
local index = status.currentStepIndex
if index == nil then
  index = 0
end
if index < #steps then
  actions["promote"]["disabled"] = false
end
return actions
