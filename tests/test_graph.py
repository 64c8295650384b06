"""explain(), to_dot() and render(): the lecture's loss graph as backward sees it."""

import shutil
import subprocess

import numpy as np
import pytest

import tinymf
from tinymf import graph
from tinymf.data import load_lecture
from tinymf.models import MatrixFactorization

# The lecture's forward code, in the order it makes its nodes:
#   l1(E1), l2(E2)          MmBackward0 x2  (one-hot rows through bias-free Linear layers)
#   l1(E1) * l2(E2)         MulBackward0
#   .sum(axis=1)            SumBackward1
#   .reshape(-1, 1)         ViewBackward0
#   + b1(E1)                MmBackward0, AddBackward0
#   + b2(E2)                MmBackward0, AddBackward0
#   sig(score)              SigmoidBackward0
#   * 5                     MulBackward0
#   loss_fn(yhat, y)        MseLossBackward0
# backward visits them last-made first.
LECTURE_BACKWARD_ORDER = [
    "MseLossBackward0",
    "MulBackward0",
    "SigmoidBackward0",
    "AddBackward0",
    "MmBackward0",  # b2
    "AddBackward0",
    "MmBackward0",  # b1
    "ViewBackward0",
    "SumBackward1",
    "MulBackward0",
    "MmBackward0",  # l2
    "MmBackward0",  # l1
]


def lecture_loss(seed: int = 21345):
    data = load_lecture()
    tinymf.manual_seed(seed)
    model = MatrixFactorization(data.n_users, data.n_items)
    yhat = model(data.user_idx, data.item_idx)
    y = tinymf.tensor(data.rating).reshape(-1, 1)
    return model, tinymf.nn.MSELoss()(yhat, y)


def test_explain_lists_the_lecture_graph_in_backward_order():
    model, loss = lecture_loss()
    story = graph.explain(loss, names=model)
    assert story.names() == LECTURE_BACKWARD_ORDER
    assert [v.order for v in story] == list(range(1, 13))
    assert [v.seq for v in story] == sorted((v.seq for v in story), reverse=True)


def test_explain_order_is_torchs_less_the_transpose_nodes():
    """torch records ``weight.t()`` inside Linear as its own TBackward0 node; tinymf's one-hot
    Linear takes the weight as it is, so its graph has the same nodes without those four."""
    torch = pytest.importorskip("torch")
    import reference

    data = load_lecture()
    torch.manual_seed(21345)
    model = reference.MatrixFactorization(data.n_users, data.n_items)
    yhat = model(torch.as_tensor(data.user_idx), torch.as_tensor(data.item_idx))
    loss = torch.nn.MSELoss()(yhat, torch.as_tensor(data.rating).reshape(-1, 1))
    nodes, stack = set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in nodes:
            continue
        nodes.add(node)
        stack.extend(fn for fn, _ in node.next_functions)
    order = [n.name() for n in sorted(nodes, key=lambda n: -n._sequence_nr())]
    assert order.count("TBackward0") == 4
    theirs = [n for n in order if n not in ("TBackward0",) and "AccumulateGrad" not in n]
    assert theirs == LECTURE_BACKWARD_ORDER


def test_explain_shows_shapes_and_where_each_input_comes_from():
    model, loss = lecture_loss()
    story = graph.explain(loss, names=model)
    mse, mul5 = story[0], story[1]
    assert mse.shape == () and mse.grad_output.tolist() == 1.0
    assert [(e.shape, e.kind, e.label) for e in mse.inputs] == [
        ((63, 1), "node", "#2 MulBackward0"),
        ((63, 1), "constant", "constant (63, 1)"),
    ]
    assert mse.inputs[1].grad is None  # the target does not require grad
    assert [(e.shape, e.kind, e.label) for e in mul5.inputs] == [
        ((63, 1), "node", "#3 SigmoidBackward0"),
        ((), "constant", "constant 5"),
    ]
    leaves = {e.label: e for v in story for e in v.inputs if e.kind == "leaf"}
    assert set(leaves) == {"l1.weight", "b1.weight", "l2.weight", "b2.weight"}
    assert leaves["l1.weight"].shape == (2, 9)
    assert story[8].shape == (63,) and story[8].inputs[0].shape == (63, 2)


def test_explained_gradients_are_the_ones_backward_accumulates():
    model, loss = lecture_loss()
    story = graph.explain(loss, names=model)
    sent = {e.label: e.grad for v in story for e in v.inputs if e.kind == "leaf"}

    loss.backward()
    for name, p in model.named_parameters():
        assert sent[name].tobytes() == p.grad.value.tobytes(), name

    # what a node passes on is what the next node receives
    for v in story:
        for e in v.inputs:
            if e.kind == "node":
                receiver = story[int(e.label.split()[0][1:]) - 1]
                assert receiver.grad_output.tobytes() == e.grad.tobytes()


def test_explain_leaves_grad_as_it_found_it_unless_asked():
    model, loss = lecture_loss()
    graph.explain(loss, names=model)
    assert all(p.grad is None for p in model.parameters())

    graph.explain(loss, names=model, keep_grad=True)
    first = {n: p.grad.value.copy() for n, p in model.named_parameters()}
    graph.explain(loss, names=model)  # restores the grads explain(keep_grad=True) left
    for name, p in model.named_parameters():
        assert np.array_equal(p.grad.value, first[name])

    graph.explain(loss, names=model, keep_grad=True)  # accumulates, like backward
    for name, p in model.named_parameters():
        assert np.array_equal(p.grad.value, first[name] + first[name])


def test_explain_keeps_the_graph_and_explains_why_it_cannot_after_backward():
    model, loss = lecture_loss()
    graph.explain(loss)
    graph.explain(loss)  # the graph is retained
    loss.backward()
    with pytest.raises(RuntimeError, match="call explain\\(\\) before loss.backward"):
        graph.explain(loss)
    with pytest.raises(ValueError, match="no grad_fn"):
        graph.explain(tinymf.tensor([1.0, 2.0]))


def test_explain_removes_its_observer():
    from tinymf.tensor import backward_observers

    before = list(backward_observers)
    _, loss = lecture_loss()
    graph.explain(loss)
    assert backward_observers == before


def test_explanation_text_reads_as_a_walk_through_backward():
    model, loss = lecture_loss()
    text = str(graph.explain(loss, names=model))
    assert text.startswith("backward visits 12 nodes")
    assert "#1  MseLossBackward0" in text
    assert "adds to l1.weight.grad (2, 9)" in text
    assert "sends no gradient" in text


# -- DOT and images --------------------------------------------------------------------------


def test_to_dot_is_deterministic_text_without_running_backward():
    model, loss = lecture_loss()
    dot = graph.to_dot(loss, names=model)
    assert dot == graph.to_dot(loss, names=model)
    assert dot.startswith("digraph backward {") and dot.rstrip().endswith("}")
    for k, name in enumerate(LECTURE_BACKWARD_ORDER, start=1):
        assert f'label="#{k} {name}\\n' in dot
    for name in ("l1.weight", "b1.weight", "l2.weight", "b2.weight"):
        assert f'label="{name}\\n' in dot
    # one edge per input: 3 nodes with one input (sigmoid, view, sum), 9 with two
    assert dot.count(" -> ") == 3 * 1 + 9 * 2
    assert all(p.grad is None for p in model.parameters())


def test_dot_quotes_names_safely():
    x = tinymf.tensor([1.0, 2.0], requires_grad=True)
    dot = graph.to_dot((x * 2).sum(), names={'say "hi"\\': x})
    assert 'label="say \\"hi\\"\\\\\\n(2,)"' in dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_render_draws_png_and_svg(tmp_path):
    model, loss = lecture_loss()
    png = graph.render(loss, tmp_path / "loss.png", names=model)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    svg = graph.graph(loss, names=model)._repr_svg_()
    assert svg is not None and "<svg" in svg and "MseLossBackward0" in svg
    bundle = graph.explain(loss, names=model)._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "image/svg+xml"}
    subprocess.run(
        ["dot", "-Tsvg"], input=graph.to_dot(loss).encode(), check=True, capture_output=True
    )


def test_without_graphviz_render_says_what_to_install_and_notebooks_get_text(monkeypatch, tmp_path):
    monkeypatch.setattr(graph.shutil, "which", lambda name: None)
    _, loss = lecture_loss()
    with pytest.raises(graph.GraphvizNotFoundError, match="Graphviz's `dot` program"):
        graph.render(loss, tmp_path / "loss.png")
    g = graph.graph(loss)
    assert g._repr_svg_() is None
    assert g._repr_mimebundle_() == {"text/plain": g.source}
    # DOT text needs no Graphviz
    assert graph.render(loss, tmp_path / "loss.dot").read_text() == g.source


def test_render_needs_a_format():
    _, loss = lecture_loss()
    with pytest.raises(ValueError, match="suffix"):
        graph.render(loss, "graph-without-suffix")
