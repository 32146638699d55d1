-- Argo CD health of a sluice.dev GitSync, from its kstatus conditions (Ready/Reconciling/Stalled).
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

local function message_of(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Sluice controller to report status"
  return hs
end
if obj.metadata.generation ~= nil and status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the Sluice controller to observe generation " .. tostring(obj.metadata.generation)
  return hs
end
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: not syncing"
  return hs
end
local ready = condition(status, "Ready")
local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = message_of(stalled, message_of(ready, "Sync stalled"))
  return hs
end
-- A sync that keeps failing is Degraded even while it retries (Reconciling=True), so it is seen.
if ready ~= nil and ready.status == "False" and (ready.reason == "SyncFailed" or ready.reason == "HealthCheckFailed") then
  hs.status = "Degraded"
  hs.message = message_of(ready, ready.reason)
  return hs
end
local reconciling = condition(status, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = message_of(reconciling, "Syncing")
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message_of(ready, "")
  return hs
end
hs.status = "Progressing"
hs.message = message_of(ready, "Waiting for the first sync")
return hs
