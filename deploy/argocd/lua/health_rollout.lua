-- Argo CD health of a sluice.dev Rollout. Reads the same status the `sluice` CLI shows: the
-- controller's kstatus conditions (Ready/Reconciling/Stalled), InvalidSpec, abort and pauses.
local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function is_true(status, kind)
  local c = condition(status, kind)
  return c ~= nil and c.status == "True"
end

-- The condition's message, else status.message, else the fallback.
local function message_of(status, kind, fallback)
  local c = condition(status, kind)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if status.message ~= nil and status.message ~= "" then
    return status.message
  end
  return fallback
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Sluice controller to report status"
  return hs
end
-- A status written for an older spec says nothing about the current one.
if obj.metadata.generation ~= nil and status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the Sluice controller to observe generation " .. tostring(obj.metadata.generation)
  return hs
end
if status.abort == true then
  hs.status = "Degraded"
  local reason = status.abortReason
  if reason == nil then
    reason = "aborted"
  end
  hs.message = "Canary aborted (" .. reason .. "): " .. message_of(status, "Stalled", "traffic is back on the stable revision")
  return hs
end
if is_true(status, "InvalidSpec") then
  hs.status = "Degraded"
  hs.message = message_of(status, "InvalidSpec", "The Rollout spec is invalid")
  return hs
end
if is_true(status, "Stalled") then
  hs.status = "Degraded"
  hs.message = message_of(status, "Stalled", "The Rollout is stalled")
  return hs
end
if obj.spec ~= nil and obj.spec.paused == true then
  hs.status = "Suspended"
  hs.message = "Paused by spec.paused"
  return hs
end
if (status.pauseConditions ~= nil and #status.pauseConditions > 0) or is_true(status, "Paused") then
  hs.status = "Suspended"
  local reason = "Paused"
  if status.pauseConditions ~= nil and #status.pauseConditions > 0 and status.pauseConditions[1].reason ~= nil then
    reason = "Paused (" .. status.pauseConditions[1].reason .. ")"
  end
  hs.message = reason .. ": " .. message_of(status, "Reconciling", "waiting for a promote or the pause to end")
  return hs
end
if is_true(status, "Reconciling") then
  hs.status = "Progressing"
  hs.message = message_of(status, "Reconciling", "Rolling out")
  return hs
end
if is_true(status, "Ready") then
  hs.status = "Healthy"
  hs.message = message_of(status, "Ready", "")
  return hs
end
hs.status = "Progressing"
hs.message = message_of(status, "Ready", "Waiting for the Rollout to become ready")
return hs
