"""One module per `reseg` subcommand, each with `add_arguments(parser)` and `run(args)`."""

from __future__ import annotations

import argparse
from typing import Any

from reseg.config import Config, load_config, validate


def dataset_config(args: argparse.Namespace, **data: Any) -> Config:
    """The config the data tools share: `--config` + `--set`, then `--dataset` / `--data-root` and any other
    `data.<key>` given here (None = not given) on top, validated again."""
    cfg = load_config(args.config, args.overrides)
    given = {"dataset": args.dataset, "root": args.data_root, **data}
    for key, value in given.items():
        if value is not None:
            setattr(cfg.data, key, value)
    validate(cfg)
    return cfg
