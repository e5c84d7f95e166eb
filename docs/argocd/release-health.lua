-- Argo CD health check for gantry.dev/Release (resource.customizations.health.gantry.dev_Release).
-- Follows Gantry's kstatus conditions: a spec Gantry has not looked at yet is Progressing;
-- a Release waiting for a person is Suspended; one that needs a fix or was rolled back is Degraded.
local hs = {}
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for Gantry to pick up the Release"
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Gantry has not yet looked at the latest spec"
  return hs
end
local phase = status.phase
local prefix = phase
if status.stage ~= nil and status.stage ~= "" then
  prefix = phase .. " (" .. status.stage .. ")"
end
hs.message = prefix
if status.message ~= nil and status.message ~= "" then
  hs.message = prefix .. ": " .. status.message
end
local healthy = {Released = true, Verified = true, Superseded = true}
local progressing = {Pending = true, Queued = true, Promoting = true, Deploying = true, Testing = true,
                     Soaking = true, RollingBack = true, Baking = true}
local suspended = {AwaitingApproval = true, AwaitingDecision = true, Held = true}
local degraded = {Blocked = true, Failed = true, RolledBack = true, Emergency = true}
if healthy[phase] then
  hs.status = "Healthy"
elseif progressing[phase] then
  hs.status = "Progressing"
elseif suspended[phase] then
  hs.status = "Suspended"
elseif degraded[phase] then
  hs.status = "Degraded"
else
  hs.status = "Unknown"
end
return hs
