"""A short tour of tinymf's learner tools: what backward visits, what Adam computes.

Run it from the project folder::

    python examples/trace_tour.py

1. ``explain(loss)`` lists the lecture's loss graph in the order ``backward()`` visits it,
   with the gradient each node sends to its inputs.
2. ``trace(steps)`` shows the numbers tinymf's Adam used in a step, beside torch's when torch
   is installed, and the difference in float32 steps (0 = bit-equal).
3. With torch's two MKL kernels lent to tinymf (``torch_kernels=True``), every difference is 0.
"""

import tinymf
from tinymf.data import load_lecture
from tinymf.graph import explain, to_dot
from tinymf.models import MatrixFactorization
from tinymf.trace import differences, torch_available, trace

data = load_lecture()

print("== 1. backward, node by node ==")
tinymf.manual_seed(21345)
model = MatrixFactorization(data.n_users, data.n_items)  # the lecture's l1, b1, l2, b2
yhat = model(data.user_idx, data.item_idx)
y = tinymf.tensor(data.rating).reshape(-1, 1)
loss = tinymf.nn.MSELoss()(yhat, y)

story = explain(loss, names=model)  # runs backward(retain_graph=True); .grad stays None
print(story)
print()
print("visiting order:", " -> ".join(story.names()))
print("l1.weight.grad after explain():", model.l1.weight.grad)
dot = to_dot(loss, names=model)
print(f"to_dot(): {len(dot.splitlines())} lines of Graphviz text, starting {dot.splitlines()[0]!r}")

print()
print("== 2. one Adam step, element by element ==")
compare = torch_available()
first = trace(1, compare_torch=compare)
print(first.select(params=["b2.weight"]).table())
if compare:
    print()
    print("elements not bit-equal to torch, per column:", differences(first))

    print()
    print("== 3. the same with torch's sqrt and matmul lent to tinymf, 5 steps ==")
    exact = trace(5, torch_kernels=True)
    print("elements not bit-equal to torch, per column:", differences(exact))
else:
    print("(torch is not installed: parts 2 and 3 compare nothing; pip install 'tinymf[torch]')")

print()
print("== rows for a notebook (first 3 of", len(first.rows()), ") ==")
for row in first.rows()[:3]:
    print(row)
