"""SidecarSet admission validation (behaviour.md §11): every problem, with its path, and warnings.

`validate(new, old, peers, policy)` is what the validating webhook and the offline CLI call.
It covers Kruise's rules (name, selectors, strategies, patchPodMetadata and its whitelist,
canaries, immutability, conflicts with overlapping SidecarSets) and the pod validation Kruise
gets by validating a fake pod, restricted to what a sidecar can break. Facts that need the API
(the other SidecarSets, the whitelist ConfigMap, the pinned ControllerRevision) come in as data.
Each family of rules is a module of this package, named after the part of the SidecarSet it
checks; `validator` walks the object through them.

Deliberate differences from Kruise:

* Native sidecars (init containers with `restartPolicy: Always`) may use RollingUpdate: this
  operator updates them in place.
* Values that defaulting fills (`podInjectPolicy`, `imagePullPolicy`, a volume's source...) are
  accepted when empty, so a not-yet-defaulted object validates as its defaulted form would.
* Stricter: unknown `updateStrategy.type`, `upgradeType`, `patchPolicy` and
  `targetContainersMode` values; percentages above 100%; a HotUpgrade container without a
  distinct `hotUpgradeEmptyImage`; MergePatchJson values that are not JSON objects; whitelist
  regexes must match the whole key; a privileged/host-level security policy.
* Looser: `partition: "0%"` with an update selector is accepted (it holds nothing back).
* Conflicts use an exact selector-overlap test and compare every name a pod would receive.
"""

from sidecarset.core.validation.policy import BASELINE_CAPABILITIES, ValidationPolicy, WhitelistRule
from sidecarset.core.validation.strategy import RevisionLookup
from sidecarset.core.validation.validator import ValidationResult, validate

__all__ = [
    "BASELINE_CAPABILITIES",
    "RevisionLookup",
    "ValidationPolicy",
    "ValidationResult",
    "WhitelistRule",
    "validate",
]
