-- Argo CD health check for apps.kruise.io/SidecarSet (sidecarset operator and OpenKruise).
-- Argo CD runs it with gopher-lua (Lua 5.1); `obj` is the live object.
--
-- With the sidecarset operator it reads status.conditions (Ready / Progressing / Stalled);
-- with OpenKruise, which has no conditions, it falls back to the pod counters.
local hs = {}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local strategy = obj.spec ~= nil and obj.spec.updateStrategy or nil
if strategy ~= nil and strategy.paused == true then
  hs.status = "Suspended"
  hs.message = "SidecarSet rollout is paused"
  return hs
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the SidecarSet controller"
  return hs
end

local generation = obj.metadata.generation or 0
local observed = obj.status.observedGeneration or 0
if observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to observe generation " .. generation
  return hs
end

local matched = obj.status.matchedPods or 0
local updated = obj.status.updatedPods or 0
local updatedReady = obj.status.updatedReadyPods or 0
local counts = updated .. " of " .. matched .. " pods updated, " .. updatedReady .. " ready"

local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message or stalled.reason or counts
  return hs
end

local ready = condition("Ready")
if ready ~= nil then
  local progressing = condition("Progressing")
  if ready.status == "True" then
    hs.status = "Healthy"
    hs.message = ready.message or counts
  elseif progressing ~= nil and progressing.status == "True" then
    hs.status = "Progressing"
    hs.message = progressing.message or counts
  else
    -- Complete but some matched pods are not ready (their own containers, not the sidecar).
    hs.status = "Progressing"
    hs.message = ready.message or counts
  end
  return hs
end

-- OpenKruise: no conditions; a rollout is done when every matched pod is updated and ready.
if updated < matched or updatedReady < updated then
  hs.status = "Progressing"
  hs.message = "Waiting for rollout to finish: " .. counts
  return hs
end
hs.status = "Healthy"
hs.message = counts
return hs
