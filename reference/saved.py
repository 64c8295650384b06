"""Loading a model file written by ``tinymf fit --save`` into the torch reference model.

The file is a NumPy ``.npz`` archive: the four weights under their ``state_dict`` names, the
id maps, and a JSON ``meta`` entry. It is read here with NumPy alone, so the reference still
shares nothing with tinymf but the data.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from .model import PARAMETER_NAMES, MatrixFactorization

__all__ = ["load_tinymf", "state_dict_numpy"]


def load_tinymf(path) -> tuple[MatrixFactorization, list[str], list[str], dict]:
    """(model, user ids, item ids, meta) from a tinymf model file.

    The weights go in through ``load_state_dict``, so their names and shapes must be the
    reference model's own. Building the model draws initial weights; torch's global random
    state is restored afterwards.
    """
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    meta = json.loads(str(arrays["meta"].item()))
    state = torch.get_rng_state()
    try:
        model = MatrixFactorization(
            meta["n_users"], meta["n_items"], dim=meta["dim"], form=meta["form"]
        )
    finally:
        torch.set_rng_state(state)
    model.load_state_dict({name: torch.from_numpy(arrays[name]) for name in PARAMETER_NAMES})
    return model, arrays["users"].tolist(), arrays["items"].tolist(), meta


def state_dict_numpy(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The model's ``state_dict()`` as float32 NumPy copies, keyed by the same names."""
    return {name: t.detach().cpu().numpy().copy() for name, t in model.state_dict().items()}
