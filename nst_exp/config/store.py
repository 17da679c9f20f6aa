"""The schemas, registered in Hydra's ConfigStore for the YAML files to extend.

Hydra's pattern for a schema with many configs ("Structured Configs: Extending configs"): each
schema is stored under a name, and a file lists it first in its defaults list, so Hydra merges
the file onto the typed schema and checks every key and value while it composes:

    conf/train.yaml            defaults: [base_train, _self_, ...]
    conf/optimizer/adam.yaml   defaults: [base_adam, _self_]

Groups with one shape of file (pair, layers, model, ...) are typed by ``TrainConf``'s fields.
Stored names start with ``base_`` and are left out of the choices an error lists.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from nst_exp.config.groups import (
    AdamConf,
    LBFGSConf,
    MXNetSGDConf,
    PixelLBFGSConf,
    RandomAffineConf,
    SchedulerConf,
    SGDConf,
    StepLRConf,
)
from nst_exp.config.schema import TrainConf

SCHEMA_PREFIX = "base_"
# group -> {name: schema}; the primary config's schema has no group.
SCHEMAS: dict[str | None, dict[str, type]] = {
    None: {"train": TrainConf},
    "optimizer": {"adam": AdamConf, "lbfgs": LBFGSConf, "pixel_lbfgs": PixelLBFGSConf, "sgd": SGDConf,
                  "mxnet_sgd": MXNetSGDConf},
    "scheduler": {"step": StepLRConf, "exponential": SchedulerConf},
    "augment": {"fv": RandomAffineConf},
}


def register_schemas() -> None:
    """Store every schema as ``base_<name>`` in its group (idempotent: a second store replaces)."""
    store = ConfigStore.instance()
    for group, schemas in SCHEMAS.items():
        for name, schema in schemas.items():
            store.store(group=group, name=SCHEMA_PREFIX + name, node=schema)
