"""The suite kinds, one module each, registered here: the one list of kinds every other list derives from.

A kind module defines a typed case config (a `config.Config`), the metric columns of its rows and one function
(case, device) -> metrics, and exposes them as `KIND`, a `runner.SuiteKind`. docs/architecture.md says how to add one.
"""

from ..runner import SuiteKind
from . import ablate, iou, kernels, mqar

KINDS: dict[str, SuiteKind] = {kind.name: kind for kind in (mqar.KIND, kernels.KIND, ablate.KIND, iou.KIND)}
