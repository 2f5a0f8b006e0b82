"""Pod injection (behaviour.md §4 and §8.1): which SidecarSets a new pod gets, and what they add.

`inject` decides everything from plain data (the Pod JSON of the admission request, the
SidecarSets, the namespace's labels, `now`) and returns an `Injection` that lists exactly what is
added: sidecar (init) containers with their positions, volumes, pull secrets and annotations. The
pod webhook turns it into a JSON patch (`patches.for_injection`); `sidecarset inject -f` and the
tests apply it with `apply_injection`, so both paths share one decision.

The package follows the steps: `matching` (which SidecarSets), `revision_choice` (which version
of each), `sidecar_container` (building each container), `placement` (where it goes, and applying
the result), `pod_annotations` (patchPodMetadata and the injection record, with `merge_patch` for
MergePatchJson), and `decision`, which runs them in order.

Where we deliberately differ from Kruise (each is listed in behaviour.md §12):

* Order is deterministic: SidecarSets are injected in name order, containers in declaration
  order within a SidecarSet (Kruise uses informer list order unless a feature gate is on).
* Injection is idempotent: a SidecarSet whose hash-annotation entry is present and whose
  containers are all in the pod is "already injected" and adds nothing (no re-injection on a
  webhook re-invocation, no second metadata patch).
* `IS_INJECTED=true` (and the hot-upgrade version env) is set once, never duplicated.
* A pod carrying `sidecarset.kruise.io/inject: "false"` (annotation or label) is never injected.
* A SidecarSet with an invalid selector is passed over with a warning instead of failing every
  pod creation in the cluster; pull secrets never remove the pod's own duplicate entries.
"""

from sidecarset.core.injection.decision import inject
from sidecarset.core.injection.matching import PodSkip, Skip
from sidecarset.core.injection.placement import apply_injection
from sidecarset.core.injection.pod_annotations import patch_metadata
from sidecarset.core.injection.result import (
    InjectedContainer,
    Injection,
    InjectionDenied,
    Placement,
    PodShape,
)
from sidecarset.core.injection.revision_choice import (
    RevisionChoiceError,
    RevisionLookupFailed,
    choose_revision,
    find_revision,
    resolve_pinned_revision,
    wants_pinned_revision,
)
from sidecarset.core.injection.sidecar_container import SIDECARSET_ONLY_FIELDS

__all__ = [
    "SIDECARSET_ONLY_FIELDS",
    "InjectedContainer",
    "Injection",
    "InjectionDenied",
    "Placement",
    "PodShape",
    "PodSkip",
    "RevisionChoiceError",
    "RevisionLookupFailed",
    "Skip",
    "apply_injection",
    "choose_revision",
    "find_revision",
    "inject",
    "patch_metadata",
    "resolve_pinned_revision",
    "wants_pinned_revision",
]
