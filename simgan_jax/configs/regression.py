"""Regressor of an image folder's numeric labels: configs/classification.py with
``kind = "regression"`` (its docstring has the commands; use ``--task=regression``)."""

import ml_collections

from simgan_jax.configs import classification


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
  return classification.get_config(variant, kind="regression")
