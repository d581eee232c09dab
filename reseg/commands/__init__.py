"""One module per `reseg` subcommand, each with `add_arguments(parser)` and `run(args)`."""

from __future__ import annotations

import argparse

from reseg.config import Config, load_config


def dataset_config(args: argparse.Namespace) -> Config:
    """The config the data tools share: `--config` + `--set`, then `--dataset` / `--data-root` on top."""
    cfg = load_config(args.config, args.overrides)
    if args.dataset:
        cfg.data.dataset = args.dataset
    if args.data_root:
        cfg.data.root = args.data_root
    return cfg
