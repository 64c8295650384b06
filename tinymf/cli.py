"""The ``tinymf`` command: train the lecture's recommender and show what it learned.

Results go to stdout, progress to stderr, and any error is one line on stderr with exit
code 2. pandas is needed here (``pip install "tinymf[cli]"``); the core never imports it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from . import arith

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


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be zero or a positive number, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, reporting a usage error as one line on stderr with exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tinymf",
        description="Train the lecture's matrix-factorization recommender on tinymf.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = commands.add_parser(
        "fit",
        help="train on a rating table and print the completed table",
        description="Train on a rating table (the lecture's by default) and print the "
        "completed table with predicted cells marked, the final loss and the latent features. "
        "With --test or --split, also the RMSE and MAE on ratings held out from training.",
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
    held_out = fit.add_mutually_exclusive_group()
    held_out.add_argument(
        "--test", metavar="FILE",
        help="a rating file to score the model on (its ids are mapped through the training "
        "file's; e.g. MovieLens u1.test beside u1.base)",
    )
    held_out.add_argument(
        "--split", type=_fraction, metavar="FRACTION",
        help="hold out this fraction of the ratings, chosen at random, and score on it",
    )
    fit.add_argument(
        "--split-seed", type=int, default=0, metavar="S",
        help="seed of the --split draw (0); the same split as torch's random_split",
    )
    fit.add_argument(
        "--batch-size", type=_positive_int, metavar="N",
        help="train on shuffled batches of N ratings (default: all at once, as the lecture)",
    )
    fit.add_argument(
        "--shuffle-seed", type=int, default=0, metavar="S",
        help="seed of the batch order (0); each epoch is torch.randperm with this generator",
    )
    fit.add_argument(
        "--reg", type=_non_negative_float, default=0.0, metavar="R",
        help="L2 penalty on the latent features of each batch's rows, added to the loss (0)",
    )
    fit.add_argument(
        "--weight-decay", type=_non_negative_float, default=0.0, metavar="W",
        help="Adam's weight_decay (0)",
    )
    fit.add_argument(
        "--eps", type=_positive_float, default=1e-8, metavar="E",
        help="Adam's eps (1e-8); larger values damp the steps of rarely rated rows",
    )
    fit.add_argument(
        "--kernels", choices=("numpy", "mkl-replay"), default="numpy",
        help="numpy (portable, the default) or mkl-replay: NumPy replays of torch's MKL sqrt "
        "and one-hot sgemm order, bit-equal to torch on the AMD CPUs they were measured on",
    )
    fit.add_argument("--save", metavar="PATH", help="save the model and its id maps here (.npz)")
    fit.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    fit.set_defaults(run=run_fit)

    predict = commands.add_parser(
        "predict",
        help="predict ratings with a model saved by fit --save",
        description="Predict ratings for user-item pairs with a saved model, by their "
        "original ids. A user or item the model never saw gets no interaction term and the "
        "mean bias of its side; the last column says which pairs that happened to.",
    )
    predict.add_argument("model", metavar="MODEL", help="a file written by tinymf fit --save")
    predict.add_argument(
        "ids", nargs="*", metavar="USER ITEM",
        help="user and item ids, in pairs",
    )
    predict.add_argument(
        "--pairs", metavar="FILE",
        help="read the pairs from a file: user and item columns (named in a header, or the "
        "first two), comma- or tab-separated",
    )
    predict.set_defaults(run=run_predict)

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
    from .training import evaluate, fit_ratings

    data = _load(args.data)
    data, held = _held_out(data, args)
    options = _training_options(args)
    if args.compare_torch and options:
        raise CommandError(
            "--compare-torch replays the lecture's full-batch loop in torch; drop "
            + ", ".join(options)
        )

    kernels = arith.mkl_replay() if args.kernels == "mkl-replay" else {}
    with _ProgressBar(args, len(data)) as on_batch, arith.use_kernels(**kernels):
        model, losses = fit_ratings(
            data.user_idx, data.item_idx, data.rating, data.n_users, data.n_items,
            dim=args.dim, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            weight_decay=args.weight_decay, eps=args.eps, reg=args.reg, seed=args.seed,
            shuffle_seed=args.shuffle_seed if args.batch_size else None, form=args.form,
            on_batch=on_batch,
        )

    cells = data.n_users * data.n_items
    print(
        f"{data.source}: {data.n_users} users x {data.n_items} items, {len(data)} ratings, "
        f"{cells - len(data)} cells to predict"
    )
    epochs = f"{args.epochs} epoch" + ("s" if args.epochs != 1 else "")
    trained = [f"trained {epochs} of Adam (lr {args.lr:g}"]
    if args.batch_size:
        trained.append(f"batches of {args.batch_size}, shuffle seed {args.shuffle_seed}")
    if args.reg:
        trained.append(f"reg {args.reg:g}")
    if args.weight_decay:
        trained.append(f"weight decay {args.weight_decay:g}")
    if args.eps != 1e-8:
        trained.append(f"eps {args.eps:g}")
    print(
        ", ".join(trained) + f"), dim {args.dim}, seed {args.seed}, {args.form} form: "
        f"final loss {losses[-1]:.6f}"
    )
    metrics = {}
    if held is not None:
        label, held_data, users, items = held
        metrics["train"] = evaluate(model, data.user_idx, data.item_idx, data.rating)
        metrics[label] = evaluate(model, users, items, held_data.rating)
        unseen = int(np.count_nonzero((users < 0) | (items < 0)))
        note = f" ({unseen} with a user or item not in training)" if unseen else ""
        print(f"{label}: {held_data.source}, {len(held_data)} ratings{note}")
        for name, m in metrics.items():
            print(f"{name:>9s} RMSE {m.rmse:.4f}  MAE {m.mae:.4f}  ({m.n} ratings)")
    print()
    print(completed_table_text(data, model, max_cells=TABLE_CELLS))
    if cells <= TABLE_CELLS:
        print()
        print(latent_features_text(data, model))

    if args.output:
        write_predictions(args.output, data, model)
        print(f"\npredictions written to {args.output}")
    if args.save:
        save_model(args.save, data, model, args, losses, metrics)
        print(f"\nmodel saved to {args.save}")
    if args.compare_torch:
        print()
        print(compare_with_torch(data, model, args))
    if args.plot:
        written = write_plots(args.plot, data, model, losses)
        print(f"\nplots written to {args.plot}: " + ", ".join(p.name for p in written))
    return 0


# the completed table and the latent features are printed for tables up to this many cells
TABLE_CELLS = 2500


def _held_out(data, args):
    """(training data, held-out part or None) from --test or --split.

    The held-out part is (label, its Ratings, user and item indices in the training maps,
    -1 where the training data never saw the id).
    """
    from .data import DataError, align, read_ratings, split

    if args.split is not None:
        try:
            data, part = split(data, args.split, args.split_seed)
        except DataError as exc:
            raise CommandError(str(exc)) from None
        return data, ("held out", part, *align(part, data))
    if args.test is not None:
        try:
            part = read_ratings(args.test)
        except DataError as exc:
            raise CommandError(str(exc)) from None
        return data, ("test", part, *align(part, data))
    return data, None


def _training_options(args) -> list[str]:
    """The options that take training away from the lecture's full-batch Adam loop."""
    named = {
        "--batch-size": args.batch_size is not None,
        "--reg": args.reg != 0,
        "--weight-decay": args.weight_decay != 0,
        "--eps": args.eps != 1e-8,
    }
    return [name for name, used in named.items() if used]


class _ProgressBar:
    """A tqdm bar on stderr with the running loss, when stderr is a terminal and not --quiet.

    Yields the ``on_batch`` callback for training (None when there is no bar).
    """

    DELAY = 1.0  # seconds before the bar appears: runs that end sooner never show one

    def __init__(self, args, n_ratings: int) -> None:
        batches = -(-n_ratings // args.batch_size) if args.batch_size else 1
        self.total = batches * args.epochs
        self.batches = batches
        self.wanted = not args.quiet and sys.stderr.isatty()
        self.bar = None

    def __enter__(self):
        if not self.wanted:
            return None
        try:
            from tqdm import tqdm
        except ImportError:  # the bar is a convenience; training goes on without it
            return None
        self.bar = tqdm(total=self.total, file=sys.stderr, unit="batch", delay=self.DELAY,
                        leave=False, dynamic_ncols=True)
        sums = [0, 0.0]

        def on_batch(epoch: int, batch: int, loss: float) -> None:
            if batch == 0:
                sums[:] = [0, 0.0]
            sums[0] += 1
            sums[1] += loss
            self.bar.set_postfix_str(
                f"epoch {epoch + 1}, loss {sums[1] / sums[0]:.4f}", refresh=False
            )
            self.bar.update(1)
            if batch == self.batches - 1:
                self.bar.refresh()  # each epoch's final running loss is shown, however fast

        return on_batch

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def save_model(path: str, data, model, args, losses, metrics) -> None:
    """Write the model, the training file's id maps and how it was made (tinymf.serialize)."""
    from .serialize import save

    settings = {
        "data": data.source,
        "test": args.test,
        "split": args.split,
        "split_seed": args.split_seed if args.split is not None else None,
        "dim": args.dim,
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "shuffle_seed": args.shuffle_seed if args.batch_size else None,
        "reg": args.reg,
        "weight_decay": args.weight_decay,
        "eps": args.eps,
        "seed": args.seed,
        "form": args.form,
        "final_loss": losses[-1],
        "metrics": {k: {"rmse": m.rmse, "mae": m.mae, "n": m.n} for k, m in metrics.items()},
    }
    try:
        save(path, model, data.users, data.items, settings)
    except OSError as exc:
        raise CommandError(f"{path}: cannot save the model: {exc.strerror or exc}") from None


def run_predict(args: argparse.Namespace) -> int:
    from .data import DataError, lookup, read_pairs
    from .models import predict_with_fallback
    from .serialize import ModelFileError, load

    if args.pairs and args.ids:
        raise CommandError("give the pairs either as USER ITEM arguments or with --pairs, not both")
    if args.pairs:
        try:
            users, items = read_pairs(args.pairs)
        except DataError as exc:
            raise CommandError(str(exc)) from None
    elif args.ids:
        if len(args.ids) % 2:
            raise CommandError(
                f"{len(args.ids)} ids given; they go in pairs: USER ITEM [USER ITEM ...]"
            )
        users, items = args.ids[0::2], args.ids[1::2]
    else:
        raise CommandError("nothing to predict: give USER ITEM pairs or --pairs FILE")
    try:
        saved = load(args.model)
    except ModelFileError as exc:
        raise CommandError(str(exc)) from None

    u, i = lookup(users, saved.users), lookup(items, saved.items)
    pred = predict_with_fallback(saved.model, u, i)
    basis = np.select(
        [(u >= 0) & (i >= 0), u >= 0, i >= 0],
        ["model", "unseen item", "unseen user"],
        "unseen user and item",
    )
    out = sys.stdout
    out.write("user,item,prediction,basis\n")
    for user, item, value, how in zip(users, items, pred.tolist(), basis.tolist(), strict=True):
        # the shortest text that reads back as the same float32
        text = np.format_float_positional(np.float32(value), unique=True, trim="-")
        out.write(f"{_csv_field(user)},{_csv_field(item)},{text},{how}\n")
    return 0


def _csv_field(text: str) -> str:
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


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
    from .trace import level_note, pin_torch_level

    pin_torch_level()
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
    import torch

    lines = ["largest difference from torch after training (tinymf - reference):"]
    note = level_note(torch.backends.cpu.get_cpu_capability())
    if note:
        lines.insert(0, note)
    for name, value in ours.items():
        diff = np.abs(value.astype(np.float64) - theirs[name].astype(np.float64))
        differing = int(np.count_nonzero(value != theirs[name]))
        lines.append(
            f"  {name:10s} max |diff| {diff.max():.3g}  ({differing} of {value.size} "
            "elements not bit-equal)"
        )
    return "\n".join(lines)
