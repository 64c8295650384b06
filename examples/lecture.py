"""The lecture "MF-based Recommender System", sections A to G, on tinymf.

The code is the lecture's, with one change: ``import tinymf as torch``. The tensors it prints
(4 decimals) are the ones the lecture printed. The pandas tables of F and G show six decimals
of float32 values after 100 Adam steps, so they agree with the lecture's to the last digit
only where tinymf's ``sqrt`` and ``matmul`` kernels round as torch's Intel MKL ones do; where
they do not, a few cells differ in the sixth decimal (``tinymf trace`` shows where such a
difference starts). Run it from the project folder::

    python examples/lecture.py

Two small departures, both forced by pandas rather than by tinymf: the ratings are read from
the copy of ``solo.csv`` bundled with tinymf instead of the web, and ``stack()`` is followed by
``dropna()`` because pandas 3 keeps the empty cells that older pandas dropped. Where the notes'
text extraction scrambled a line of code, it is rebuilt so that it prints the lecture's number.
"""

# ruff: noqa: N806, N816, B007 -- the lecture's names (X1, W_feartures, 옥순성향, ...), loop variable

import pandas as pd

import tinymf as torch
from tinymf.data import lecture_path

pd.set_option("display.unicode.east_asian_width", True)  # Korean names take two columns
pd.set_option("display.width", 200)
pd.set_option("display.max_columns", 20)


def section(title: str) -> None:
    print(f"\n{'=' * 8} {title} {'=' * (80 - len(title))}")


# -- A. 나는 SOLO ---------------------------------------------------------------------------
section("A. 나는 SOLO")
df_view = pd.read_csv(lecture_path(), index_col=0)
print(df_view)

# -- B. Fit / Predict ------------------------------------------------------------------------
section("B. Fit / Predict: 옥순(IN)과 영식(IN), 영자(IN)와 다호(ES), 하니(I)와 영호(IS)")
옥순성향 = torch.tensor([1.22, 0.49]).reshape(1, 2)
옥순매력 = torch.tensor(1.21)
영식성향 = torch.tensor([1.20, 0.5]).reshape(1, 2)
영식매력 = torch.tensor(1.2)
print((옥순성향 * 영식성향).sum() + 옥순매력 + 영식매력)  # a ∘ b 로 내적
print(옥순성향 @ 영식성향.T + 옥순매력 + 영식매력)  # a.T @ b 로 내적: tensor([[4.1190]])

영자성향 = torch.tensor([1.17, 0.44]).reshape(1, 2)
영자매력 = torch.tensor(1.25).reshape(1, 1)
다호성향 = torch.tensor([-1.22, -0.6]).reshape(1, 2)
다호매력 = torch.tensor(1.15).reshape(1, 1)
print(영자성향 @ 다호성향.T + 영자매력 + 다호매력)  # tensor([[0.7086]])

하니성향 = torch.tensor([0.2, 0]).reshape(1, 2)
하니매력 = torch.tensor(3.6)
영호성향 = torch.tensor([1.23, -0.7]).reshape(1, 2)
영호매력 = torch.tensor(1.11)
print(하니성향 @ 영호성향.T + 하니매력 + 영호매력)  # tensor([[4.9560]])

section("B. 여자와 남자의 전체 설정값, W @ M.T + (b1 + b2.T)")
옥순성향 = torch.tensor([1.22, 0.49]).reshape(1, 2)
영자성향 = torch.tensor([1.17, 0.44]).reshape(1, 2)
정숙성향 = torch.tensor([1.21, -0.45]).reshape(1, 2)
영숙성향 = torch.tensor([1.20, -0.50]).reshape(1, 2)
순자성향 = torch.tensor([-1.20, 0.51]).reshape(1, 2)
현숙성향 = torch.tensor([-1.23, 0.48]).reshape(1, 2)
서연성향 = torch.tensor([-1.20, -0.48]).reshape(1, 2)
보람성향 = torch.tensor([-1.19, -0.49]).reshape(1, 2)
하니성향 = torch.tensor([0.2, 0]).reshape(1, 2)
W = torch.concat(
    [옥순성향, 영자성향, 정숙성향, 영숙성향, 순자성향, 현숙성향, 서연성향, 보람성향, 하니성향]
)
b1 = torch.tensor([1.21, 1.25, 1.10, 1.11, 1.12, 1.13, 1.14, 1.12, 3.6]).reshape(-1, 1)
print((W, b1))

영식성향 = torch.tensor([1.20, 0.5]).reshape(1, 2)
영철성향 = torch.tensor([1.22, 0.45]).reshape(1, 2)
영호성향 = torch.tensor([1.23, -0.7]).reshape(1, 2)
광수성향 = torch.tensor([1.21, -0.6]).reshape(1, 2)
상철성향 = torch.tensor([-1.28, 0.6]).reshape(1, 2)
영수성향 = torch.tensor([-1.24, 0.5]).reshape(1, 2)
규빈성향 = torch.tensor([-1.20, -0.5]).reshape(1, 2)
다호성향 = torch.tensor([-1.22, -0.6]).reshape(1, 2)
M = torch.concat([영식성향, 영철성향, 영호성향, 광수성향, 상철성향, 영수성향, 규빈성향, 다호성향])
b2 = torch.tensor([1.2, 1.10, 1.11, 1.25, 1.18, 1.11, 1.15, 1.15]).reshape(-1, 1)
print((M, b2))
print(W @ M.T + (b1 + b2.T))

# -- C. 함수 생성 ----------------------------------------------------------------------------
section("C. dataframe의 변형, 이름을 숫자화, 텐서화 + one_hot-encoding")
df_train = df_view.stack().dropna().reset_index().set_axis(["W", "M", "y"], axis=1)
w = {'옥순(IN)':0, '영자(IN)':1, '정숙(IS)':2, '영숙(IS)':3, '순자(EN)':4, '현숙(EN)':5, '서연(ES)':6, '보람(ES)':7, '하니(I)':8}  # noqa: E231, E501  # fmt: skip
m = {'영식(IN)':0, '영철(IN)':1, '영호(IS)':2, '광수(IS)':3, '상철(EN)':4, '영수(EN)':5, '규빈(ES)':6, '다호(ES)':7}  # noqa: E231, E501  # fmt: skip
df_train["X1"] = df_train["W"].map(w)
df_train["X2"] = df_train["M"].map(m)
print(df_train)

y = torch.tensor(df_train["y"]).float()
X1 = torch.tensor(df_train["X1"])
X2 = torch.tensor(df_train["X2"])
E1 = torch.nn.functional.one_hot(X1).float()
E2 = torch.nn.functional.one_hot(X2).float()
print(f"y.shape: {y.shape},\t y.dtype: {y.dtype}")
print(f"X1.shape: {X1.shape},\t X1.dtype: {X1.dtype} // X1.unique: {X1.unique()}")
print(f"X2.shape: {X2.shape},\t X2.dtype: {X2.dtype} // X2.unique: {X2.unique()}")
print(f"E1.shape: {E1.shape},\t E1.dtype: {E1.dtype} -- shape에서 9는 여성이 9명이라는 의미")
print(f"E2.shape: {E2.shape},\t E2.dtype: {E2.dtype} -- shape에서 8은 남성이 8명이라는 의미")

# -- D. step1~4 -----------------------------------------------------------------------------
section("D. step1~4 once (y is the (63,) vector here, so MSELoss warns and broadcasts)")
## step1
torch.manual_seed(21345)
l1 = torch.nn.Linear(9, 2, bias=False)
b1 = torch.nn.Linear(9, 1, bias=False)
l2 = torch.nn.Linear(8, 2, bias=False)
b2 = torch.nn.Linear(8, 1, bias=False)
W_feartures = l1(E1)
W_bias = b1(E1)
M_feartures = l2(E2)
M_bias = b2(E2)
sig = torch.nn.Sigmoid()
score = (W_feartures * M_feartures).sum(axis=1).reshape(-1, 1) + W_bias + M_bias
yhat = sig(score) * 5
## step2
loss_fn = torch.nn.MSELoss()
loss = loss_fn(yhat, y)
## step3
print("(미분전)")
print((l1.weight.data, b1.weight.data, l2.weight.data, b2.weight.data))
print((l1.weight.grad, b1.weight.grad, l2.weight.grad, b2.weight.grad))
loss.backward()
print("(미분후)")
print((l1.weight.grad, b1.weight.grad, l2.weight.grad, b2.weight.grad))
## step4
params = (
    list(l1.parameters()) + list(l2.parameters()) + list(b1.parameters()) + list(b2.parameters())
)
optimizr = torch.optim.Adam(params, lr=0.1)
optimizr.step()
print("update")
print((l1.weight.data, b1.weight.data, l2.weight.data, b2.weight.data))
optimizr.zero_grad()
print("zero_grad")
print((l1.weight.grad, b1.weight.grad, l2.weight.grad, b2.weight.grad))


# -- E, F, G. 코드정리, 모형의 해석 --------------------------------------------------------------
def lecture_program(seed: int):
    """Section E's program, as the lecture wrote it (G runs it again with seed 8)."""
    df_train = df_view.stack().dropna().reset_index().set_axis(["W", "M", "y"], axis=1)
    X1 = torch.tensor(df_train["W"].map(w))  # length-n vector
    X2 = torch.tensor(df_train["M"].map(m))  # length-n vector
    E1 = torch.nn.functional.one_hot(X1).float()
    E2 = torch.nn.functional.one_hot(X2).float()
    y = torch.tensor(df_train["y"]).float().reshape(-1, 1)
    # --#
    torch.manual_seed(seed)
    l1 = torch.nn.Linear(in_features=9, out_features=2, bias=False)
    b1 = torch.nn.Linear(in_features=9, out_features=1, bias=False)
    l2 = torch.nn.Linear(in_features=8, out_features=2, bias=False)
    b2 = torch.nn.Linear(in_features=8, out_features=1, bias=False)
    sig = torch.nn.Sigmoid()
    loss_fn = torch.nn.MSELoss()
    params = (
        list(l1.parameters())
        + list(b1.parameters())
        + list(l2.parameters())
        + list(b2.parameters())
    )
    optimizr = torch.optim.Adam(params, lr=0.1)
    # --#
    for epoc in range(100):
        ## step1
        W_features = l1(E1)
        W_bias = b1(E1)
        M_features = l2(E2)
        M_bias = b2(E2)
        score = (W_features * M_features).sum(axis=1).reshape(-1, 1) + W_bias + M_bias
        yhat = sig(score) * 5
        ## step2
        loss = loss_fn(yhat, y)
        ## step3
        loss.backward()
        ## step4
        optimizr.step()
        optimizr.zero_grad()
    print(torch.concat([yhat, y], axis=1)[::4])  # 꽤 잘맞음

    df_match = pd.DataFrame((W_features * M_features).data).set_axis(
        ["잠재특징궁합1", "잠재특징궁합2"], axis=1
    )
    df_bias = pd.DataFrame(torch.concat([W_bias, M_bias], axis=1).data).set_axis(
        ["여성bias", "남성bias"], axis=1
    )
    return pd.concat([df_train.loc[:, "W":"M"], df_match, df_bias], axis=1)


section("E. 코드정리: 100 epochs of Adam, seed 21345")
df_features = lecture_program(21345)

section("F. 모형의 해석 - 쉬운 경우")
print(df_features[:56])
print(df_features[56:])

section("G. 모형의 해석 - 어려운 경우: the same program with seed 8")
df_features = lecture_program(8)
print(df_features[:56])
print(df_features[56:])
print(df_features[df_features.W.str.contains("IN") & df_features.M.str.contains("ES")])
