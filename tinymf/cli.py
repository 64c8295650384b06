"""The ``tinymf`` command: train the lecture's recommender and show what it learned.

Results go to stdout, progress to stderr, and any error is one line on stderr with exit
code 2. pandas is needed here (``pip install "tinymf[cli]"``); the core never imports it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

EXIT_USAGE = 2


class CommandError(Exception):
    """A problem with the user's input: reported as one line, exit code 2."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinymf",
        description="Train the lecture's matrix-factorization recommender on tinymf.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = commands.add_parser(
        "fit",
        help="train on a rating table and print the completed table",
        description="Train on a rating table (the lecture's by default) and print the "
        "completed table with predicted cells marked, the final loss and the latent features.",
    )
    fit.add_argument(
        "data", nargs="?", default=None,
        help="a wide table like the lecture's (users as rows) or a long user,item,rating file; "
        "default: the lecture's solo.csv, bundled",
    )
    fit.add_argument("--dim", type=_positive_int, default=2, help="latent dimension (2)")
    fit.add_argument("--epochs", type=_positive_int, default=100, help="training epochs (100)")
    fit.add_argument("--lr", type=_positive_float, default=0.1, help="Adam learning rate (0.1)")
    fit.add_argument("--seed", type=int, default=21345, help="manual_seed before init (21345)")
    fit.add_argument(
        "--form", choices=("onehot", "embedding"), default="onehot",
        help="one-hot Linear layers as in the lecture, or Embedding tables",
    )
    fit.add_argument("--output", metavar="CSV", help="write every user-item prediction here")
    fit.add_argument(
        "--compare-torch", action="store_true",
        help="train the torch reference too and print the largest difference per parameter",
    )
    fit.add_argument(
        "--plot", metavar="DIR",
        help="write loss.png, features.png, predictions.png and table.png into DIR "
        "(needs the plot extra: pip install 'tinymf[plot]')",
    )
    fit.set_defaults(run=run_fit)

    trace = commands.add_parser(
        "trace",
        help="show every number of a few Adam steps, beside torch's",
        description="Run a few training steps of the lecture's model and show, per parameter "
        "element and step, the value, gradient, Adam's m and v, bias corrections, step size, "
        "denominator, update and new value that tinymf's Adam used, beside torch's and the "
        "difference (0 = bit-equal). torch's bias corrections, step size, denom and update are "
        "derived from its optimizer state as its Adam computes them; the rest are read from it.",
    )
    trace.add_argument(
        "data", nargs="?", default=None,
        help="a rating table as for fit; default: the lecture's solo.csv, bundled",
    )
    trace.add_argument("--steps", type=_positive_int, default=1, help="Adam steps to run (1)")
    trace.add_argument("--dim", type=_positive_int, default=2, help="latent dimension (2)")
    trace.add_argument("--lr", type=_positive_float, default=0.1, help="Adam learning rate (0.1)")
    trace.add_argument("--seed", type=int, default=21345, help="manual_seed before init (21345)")
    trace.add_argument("--form", choices=("onehot", "embedding"), default="onehot",
                       help="one-hot Linear layers as in the lecture, or Embedding tables")
    trace.add_argument(
        "--param", action="append", metavar="NAME",
        choices=("l1.weight", "b1.weight", "l2.weight", "b2.weight"),
        help="show only this parameter (repeatable): l1.weight, b1.weight, l2.weight, b2.weight",
    )
    trace.add_argument(
        "--format", choices=("table", "csv", "json"), default="table",
        help="a readable table (default), or one row per step, element and quantity as CSV "
        "or JSON, every value exact",
    )
    trace.add_argument("--output", metavar="FILE", help="write the trace here, not to stdout")
    trace.add_argument(
        "--torch-kernels", action="store_true",
        help="run tinymf with torch's sqrt and matmul (the two MKL kernels it does not "
        "reproduce), so every difference from torch is exactly 0",
    )
    trace.add_argument("--no-torch", action="store_true",
                       help="show tinymf's numbers only, even when torch is installed")
    trace.add_argument("--differences-only", action="store_true",
                       help="in the table, show only elements that differ from torch")
    trace.set_defaults(run=run_trace)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except CommandError as exc:
        print(f"tinymf: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return 0


def _load(path: str | None):
    from .data import DataError, load_lecture, read_ratings

    try:
        return load_lecture() if path is None else read_ratings(path)
    except DataError as exc:
        raise CommandError(str(exc)) from None


def run_fit(args: argparse.Namespace) -> int:
    from .models import fit

    data = _load(args.data)
    model, losses = fit(
        data.user_idx, data.item_idx, data.rating, data.n_users, data.n_items,
        dim=args.dim, epochs=args.epochs, lr=args.lr, seed=args.seed, form=args.form,
    )

    print(
        f"{data.source}: {data.n_users} users x {data.n_items} items, {len(data)} ratings, "
        f"{data.n_users * data.n_items - len(data)} cells to predict"
    )
    print(
        f"trained {args.epochs} epochs of Adam (lr {args.lr:g}), dim {args.dim}, "
        f"seed {args.seed}, {args.form} form: final loss {losses[-1]:.6f}"
    )
    print()
    print(completed_table_text(data, model))
    print()
    print(latent_features_text(data, model))

    if args.output:
        write_predictions(args.output, data, model)
        print(f"\npredictions written to {args.output}")
    if args.compare_torch:
        print()
        print(compare_with_torch(data, model, args))
    if args.plot:
        written = write_plots(args.plot, data, model, losses)
        print(f"\nplots written to {args.plot}: " + ", ".join(p.name for p in written))
    return 0


def write_plots(directory: str, data, model, losses):
    """The four PNGs of tinymf.plots; a missing matplotlib or font is a one-line error."""
    try:
        from . import plots
    except ImportError as exc:  # pragma: no cover - plots itself imports NumPy only
        raise CommandError(f"--plot: {exc}") from None
    try:
        return plots.save_all(data, model, losses, directory)
    except ModuleNotFoundError as exc:
        raise CommandError(
            f"--plot needs {exc.name}; install it with: pip install -c constraints.txt "
            "'tinymf[plot]'"
        ) from None
    except plots.FontNotFoundError as exc:
        raise CommandError(f"--plot: {exc}") from None
    except OSError as exc:
        raise CommandError(f"{directory}: cannot write the plots: {exc.strerror}") from None


def run_trace(args: argparse.Namespace) -> int:
    from .trace import torch_available, trace

    data = _load(args.data)
    wants_torch = not args.no_torch
    if (args.torch_kernels or wants_torch) and not torch_available():
        if args.torch_kernels:
            raise CommandError(
                "--torch-kernels needs torch and the reference model; install them with: "
                "pip install -c constraints.txt 'tinymf[torch]'"
            )
        wants_torch = False
    result = trace(
        args.steps, data=data, dim=args.dim, lr=args.lr, seed=args.seed, form=args.form,
        compare_torch=wants_torch, torch_kernels=args.torch_kernels,
    )
    if args.param:
        result = result.select(params=args.param)

    if args.format == "csv":
        text = result.to_csv()
    elif args.format == "json":
        text = result.to_json() + "\n"
    else:
        text = result.table(differences_only=args.differences_only) + "\n"
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8", newline="") as f:
                f.write(text)
        except OSError as exc:
            raise CommandError(f"{args.output}: cannot write the trace: {exc.strerror}") from None
        print(f"trace written to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def _grid(data, model) -> np.ndarray:
    users = np.repeat(np.arange(data.n_users), data.n_items)
    items = np.tile(np.arange(data.n_items), data.n_users)
    return model.predict(users, items).reshape(data.n_users, data.n_items)


def completed_table_text(data, model, max_cells: int = 2500) -> str:
    """The rating table with every empty cell filled in by the model and marked ``*``."""
    import pandas as pd

    if data.n_users * data.n_items > max_cells:
        return (
            f"(the completed table has {data.n_users * data.n_items} cells; "
            "use --output to write the predictions)"
        )
    pred = _grid(data, model)
    observed = np.zeros_like(pred, dtype=bool)
    observed[data.user_idx, data.item_idx] = True
    cells = np.where(observed, np.char.mod("%.2f ", pred), np.char.mod("%.2f*", pred))
    table = pd.DataFrame(cells, index=data.users, columns=data.items)
    with pd.option_context("display.unicode.east_asian_width", True,
                           "display.width", 200, "display.max_columns", 50):
        text = table.to_string()
    return "completed rating table (* = predicted by the model)\n" + text


def latent_features_text(data, model, max_rows: int = 40) -> str:
    import pandas as pd

    def block(names, feats, bias, title):
        cols = [f"feature{i + 1}" for i in range(feats.shape[1])]
        frame = pd.DataFrame(feats, index=names, columns=cols)
        frame["bias"] = bias
        shown = frame if len(frame) <= max_rows else frame.head(max_rows)
        with pd.option_context("display.unicode.east_asian_width", True,
                               "display.float_format", "{:.4f}".format, "display.width", 200):
            text = shown.to_string()
        more = "" if len(frame) <= max_rows else f"\n... {len(frame) - max_rows} more"
        return f"{title}\n{text}{more}"

    return "\n\n".join([
        block(data.users, model.user_features(), model.user_bias(), "latent features: users"),
        block(data.items, model.item_features(), model.item_bias(), "latent features: items"),
    ])


def write_predictions(path: str, data, model) -> None:
    import pandas as pd

    pred = _grid(data, model)
    rated = np.full(pred.shape, np.nan, dtype=np.float64)
    rated[data.user_idx, data.item_idx] = data.rating
    frame = pd.DataFrame({
        "user": np.repeat(np.asarray(data.users, dtype=object), data.n_items),
        "item": np.tile(np.asarray(data.items, dtype=object), data.n_users),
        "rating": rated.reshape(-1),
        "prediction": pred.reshape(-1).astype(np.float64),
    })
    try:
        frame.to_csv(path, index=False, float_format="%.6g")
    except OSError as exc:
        raise CommandError(f"{path}: cannot write predictions: {exc.strerror}") from None


def compare_with_torch(data, model, args) -> str:
    """Train the torch reference with the same settings; report the largest differences."""
    try:
        import reference
    except ImportError as exc:
        raise CommandError(
            f"--compare-torch needs torch and the reference model ({exc}); "
            "install them with: pip install -c constraints.txt 'tinymf[torch]'"
        ) from None
    from .models import parameters_numpy

    ref_model, ref_losses = reference.fit(
        data.user_idx, data.item_idx, data.rating, data.n_users, data.n_items,
        dim=args.dim, epochs=args.epochs, lr=args.lr, seed=args.seed, form=args.form,
    )
    ours = parameters_numpy(model)
    theirs = reference.parameters_numpy(ref_model)
    lines = ["largest difference from torch after training (tinymf - reference):"]
    for name, value in ours.items():
        diff = np.abs(value.astype(np.float64) - theirs[name].astype(np.float64))
        differing = int(np.count_nonzero(value != theirs[name]))
        lines.append(
            f"  {name:10s} max |diff| {diff.max():.3g}  ({differing} of {value.size} "
            "elements not bit-equal)"
        )
    return "\n".join(lines)
