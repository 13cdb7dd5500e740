"""Attention through the engine: products of two input-dependent tensors (matmul, bmm, einsum) and
F.scaled_dot_product_attention, by AttnLRP's rules (Achtibat et al. 2024) and CP-LRP (Ali et al.
2022), each against a reference written out term by term from the papers' equations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sciexplain as sx
from sciexplain.rules import BilinearUniform, ConstantAttention, Epsilon

TINY = 1e-12  # stabilisers small enough that float64 references need not model them
EXACT = {"base": "epsilon", nn.Linear: Epsilon(TINY), "op:matmul": BilinearUniform(TINY)}


def sign0(t):
    return np.where(t >= 0, 1.0, -1.0)


def head_relevance(model_head: nn.Linear, flat: np.ndarray, target: int, eps: float) -> np.ndarray:
    """Epsilon-LRP on a bias-free Linear head: R_f = f W_tf y_t / (y_t + eps sign(y_t))."""
    w = model_head.weight.detach().numpy()[target]
    y = flat @ w
    return flat * w * (y / (y + eps * sign0(y)))[:, None]


# -- products of two input-dependent tensors ---------------------------------------------------------

def reference_uniform(A: np.ndarray, B: np.ndarray, R: np.ndarray, eps: float):
    """AttnLRP's matmul rule, the explicit sum over i, j, k: O_ik = sum_j A_ij B_jk, each term's
    share A_ij B_jk R_ik / (O_ik + eps sign(O_ik)) split half/half between A_ij and B_jk."""
    n, k = A.shape
    m = B.shape[1]
    O = A @ B
    RA, RB = np.zeros_like(A), np.zeros_like(B)
    for i in range(n):
        for j in range(k):
            for p in range(m):
                share = A[i, j] * B[j, p] * R[i, p] / (O[i, p] + eps * sign0(O[i, p]))
                RA[i, j] += share / 2
                RB[j, p] += share / 2
    return RA, RB


class Product(nn.Module):
    """x -> (A, B) -> product -> Linear head; A (n, k) and B (k, m) are slices of the input."""

    def __init__(self, op: str, n: int, k: int, m: int):
        super().__init__()
        self.op, self.n, self.k, self.m = op, n, k, m
        self.head = nn.Linear(n * m, 2, bias=False)

    def forward(self, x):
        nk = self.n * self.k
        a = x[:, :nk].reshape(-1, self.n, self.k)
        b = x[:, nk:].reshape(-1, self.k, self.m)
        if self.op == "matmul":
            o = a @ b
        elif self.op == "bmm":
            o = torch.bmm(a, b)
        elif self.op == "einsum":
            o = torch.einsum("bnk,bkm->bnm", a, b)
        else:  # implicit output, ellipsis
            o = torch.einsum("...ij,...jk", a, b)
        return self.head(o.flatten(1))


@settings(max_examples=25, deadline=None)
@given(op=st.sampled_from(["matmul", "bmm", "einsum", "einsum-implicit"]), n=st.integers(1, 4),
       k=st.integers(1, 4), m=st.integers(1, 4), batch=st.integers(1, 3), seed=st.integers(0, 1000))
def test_bilinear_rule_is_the_explicit_sum_over_terms(op, n, k, m, batch, seed):
    torch.manual_seed(seed)
    model = Product(op, n, k, m).double().eval()
    x = torch.randn(batch, n * k + k * m, dtype=torch.float64)
    R = sx.Explainer(model, preset=EXACT).explain(x, 0)
    np.testing.assert_allclose(R.values.sum(1) + R.absorbed.values, R.prediction.values, rtol=1e-9, atol=1e-12)
    for b in range(batch):
        A = x[b, : n * k].reshape(n, k).numpy()
        B = x[b, n * k:].reshape(k, m).numpy()
        R_O = head_relevance(model.head, (A @ B).reshape(1, -1), 0, TINY).reshape(n, m)
        RA, RB = reference_uniform(A, B, R_O, TINY)
        np.testing.assert_allclose(R.values[b], np.concatenate([RA.ravel(), RB.ravel()]), rtol=1e-7, atol=1e-10)


def test_bilinear_ledger_in_float32_and_default_preset():
    torch.manual_seed(3)
    model = Product("matmul", 3, 4, 2).eval()
    x = torch.randn(5, 12 + 8)
    R, led = sx.Explainer(model, preset="epsilon").explain_with_ledger(x, 1)
    total = R.values.astype(np.float64).sum(1) + R.absorbed.values
    np.testing.assert_allclose(total, R.prediction.values, rtol=1e-5, atol=1e-6)
    row = [r for r in led.layer.values if r.startswith("matmul")][0]
    assert str(led.rule.sel(layer=row).values) == "BilinearUniform(epsilon=1e-06)"
    assert "bilinear: BilinearUniform(epsilon=1e-06) (1 ops)" in R.attrs["rules"]


def test_product_of_a_tensor_with_itself():
    """x @ x^T (one operand reached twice): both halves go back to x."""
    torch.manual_seed(4)

    class Gram(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(9, 1, bias=False)

        def forward(self, x):
            return self.head((x @ x.transpose(1, 2)).flatten(1))
    model = Gram().double().eval()
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    R = sx.Explainer(model, preset=EXACT).explain(x, 0)
    for b in range(2):
        X = x[b].numpy()
        R_O = head_relevance(model.head, (X @ X.T).reshape(1, -1), 0, TINY).reshape(3, 3)
        RA, RB = reference_uniform(X, X.T, R_O, TINY)
        np.testing.assert_allclose(R.values[b], RA + RB.T, rtol=1e-7, atol=1e-10)


def test_product_mixing_samples_is_refused_clearly():
    class Mix(nn.Module):
        def forward(self, x):
            return (x @ x.t())[:, :2]
    with pytest.raises(sx.UnsupportedModelError, match="matrix dims"):
        sx.explain(Mix().eval(), torch.randn(3, 4))


def test_batch_dim_after_the_heads():
    """(heads, batch, L, d) tensors: the batch is a leading dim of the product, not the first."""
    torch.manual_seed(5)

    class HeadsFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(2 * 3 * 3, 2)

        def forward(self, x):  # x (B, 2, 3, 4)
            h = x.transpose(0, 1)  # (heads, B, L, d)
            s = torch.softmax(h @ h.transpose(-1, -2), -1) @ h[..., :3]
            return self.head(s.transpose(0, 1).flatten(1))
    x = torch.randn(3, 2, 3, 4)
    for preset in ("epsilon", "attnlrp"):
        R = sx.Explainer(HeadsFirst().eval(), preset=preset).explain(x)
        np.testing.assert_allclose(R.values.astype(np.float64).sum((1, 2, 3)) + R.absorbed.values,
                                   R.prediction.values, rtol=1e-5, atol=1e-6)


def test_einsum_with_a_constant_is_a_dense_layer():
    """einsum('bi,oi->bo', x, W) is F.linear(x, W): the same relevance under every preset."""
    torch.manual_seed(6)
    W = torch.randn(5, 4)

    class ByEinsum(nn.Module):
        def __init__(self, einsum: bool):
            super().__init__()
            self.register_buffer("W", W.clone())
            self.einsum = einsum
            self.head = nn.Linear(5, 2)

        def forward(self, x):
            h = torch.einsum("bi,oi->bo", x, self.W) if self.einsum else F.linear(x, self.W)
            return self.head(torch.relu(h))
    x = torch.randn(3, 4)
    by_einsum, by_linear = ByEinsum(True).eval(), ByEinsum(False).eval()
    by_linear.load_state_dict(by_einsum.state_dict())
    for preset in ("epsilon", "alpha2-beta1"):
        a = sx.Explainer(by_einsum, preset=preset).explain(x)
        b = sx.Explainer(by_linear, preset=preset).explain(x)
        np.testing.assert_allclose(a.values, b.values, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(a.absorbed.values, b.absorbed.values, rtol=1e-5, atol=1e-7)


def test_einsum_of_three_operands_is_refused_clearly():
    class Three(nn.Module):
        def forward(self, x):
            return torch.einsum("bi,bi,bi->b", x, x, x)[:, None]
    with pytest.raises(sx.UnsupportedModelError, match="only two-operand einsum"):
        sx.explain(Three().eval(), torch.randn(2, 3))


# -- attention --------------------------------------------------------------------------------------

def reference_attention(q, k, v, mask, R_O, eps, constant=False):
    """AttnLRP (or CP-LRP) on one head, term by term from the papers:

    x_ls = sum_i scale q_li k_si + M_ls, A = softmax_s(x), O_le = sum_s A_ls v_se.
    1. O = A v, epsilon over each sum: term A_ls v_se R_le / (O_le + eps); AttnLRP: half to A_ls,
       half to v_se; CP-LRP: all to v_se (A constant).
    2. softmax (Prop. 3.1): R_x_ls = x_ls (R_A_ls - A_ls sum_s' R_A_ls').
    3. x = z + M, epsilon with M as bias: term scale q_li k_si R_x_ls / (x_ls + eps), half to q_li
       and half to k_si; masked entries (-inf) carry nothing.
    """
    L, E = q.shape
    S = k.shape[0]
    scale = 1.0 / math.sqrt(E)
    x = scale * q @ k.T + mask
    A = np.exp(x - x.max(1, keepdims=True))
    A = A / A.sum(1, keepdims=True)
    O = A @ v
    RA, Rq, Rk, Rv = np.zeros_like(A), np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    for ll in range(L):
        for s in range(S):
            for e in range(v.shape[1]):
                share = A[ll, s] * v[s, e] * R_O[ll, e] / (O[ll, e] + eps * sign0(O[ll, e]))
                if constant:
                    Rv[s, e] += share
                else:
                    RA[ll, s] += share / 2
                    Rv[s, e] += share / 2
    if constant:
        return Rq, Rk, Rv
    for ll in range(L):
        total = RA[ll].sum()
        for s in range(S):
            if not np.isfinite(x[ll, s]):
                continue
            R_x = x[ll, s] * (RA[ll, s] - A[ll, s] * total)
            for i in range(E):
                share = scale * q[ll, i] * k[s, i] * R_x / (x[ll, s] + eps * sign0(x[ll, s]))
                Rq[ll, i] += share / 2
                Rk[s, i] += share / 2
    return Rq, Rk, Rv


class Attention(nn.Module):
    """x (B, 3, H, L, E) -> q, k, v -> attention (SDPA or written out) -> Linear head."""

    def __init__(self, H, L, E, sdpa, mask=None, causal=False):
        super().__init__()
        self.sdpa, self.causal = sdpa, causal
        self.register_buffer("mask", mask)
        self.head = nn.Linear(H * L * E, 2, bias=False)

    def forward(self, x):
        q, k, v = x[:, 0], x[:, 1], x[:, 2]
        if self.sdpa:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask, is_causal=self.causal)
        else:
            scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
            if self.mask is not None:
                scores = scores + self.mask
            o = torch.softmax(scores, dim=-1) @ v
        return self.head(o.flatten(1))


def _masks(kind, L):
    """(mask given to the model, additive mask of the reference)."""
    if kind == "none":
        return None, np.zeros((L, L)), False
    if kind == "causal":
        return None, np.where(np.tril(np.ones((L, L))) > 0, 0.0, -np.inf), True
    keep = torch.ones(L, L, dtype=torch.bool)
    keep[:, -1] = False  # the last key is padding, hidden from every query
    if kind == "bool":
        return keep, np.where(keep.numpy(), 0.0, -np.inf), False
    additive = torch.where(keep, torch.linspace(-0.5, 0.5, L * L, dtype=torch.float64).reshape(L, L),
                           torch.tensor(-1e9, dtype=torch.float64))
    return additive, additive.numpy(), False


@settings(max_examples=12, deadline=None)
@given(H=st.integers(1, 2), L=st.integers(2, 4), E=st.integers(1, 3), seed=st.integers(0, 1000),
       mask_kind=st.sampled_from(["none", "bool", "float", "causal"]), sdpa=st.booleans(),
       preset=st.sampled_from(["attnlrp", "cp-lrp"]))
def test_attention_matches_the_papers_term_by_term(H, L, E, seed, mask_kind, sdpa, preset):
    torch.manual_seed(seed)
    mask, additive, causal = _masks(mask_kind, L)
    if not sdpa and mask_kind in ("bool", "causal"):  # the written-out model adds finite masks only
        mask = torch.as_tensor(np.where(np.isfinite(additive), 0.0, -1e9))
        additive = mask.numpy()
    model = Attention(H, L, E, sdpa, mask, causal and sdpa).double().eval()
    x = torch.randn(2, 3, H, L, E, dtype=torch.float64)
    product = BilinearUniform(TINY) if preset == "attnlrp" else ConstantAttention(TINY)
    rules = {"base": preset, nn.Linear: Epsilon(TINY), "op:matmul": product}
    R = sx.Explainer(model, preset=rules).explain(x, 0)
    np.testing.assert_allclose(R.values.sum((1, 2, 3, 4)) + R.absorbed.values, R.prediction.values, rtol=1e-9)
    for b in range(2):
        qs, ks, vs = (x[b, i].numpy() for i in range(3))
        Os = []
        for h in range(H):
            sc = qs[h] @ ks[h].T / math.sqrt(E) + additive
            A = np.exp(sc - sc.max(1, keepdims=True))
            Os.append((A / A.sum(1, keepdims=True)) @ vs[h])
        R_O = head_relevance(model.head, np.stack(Os).reshape(1, -1), 0, TINY).reshape(H, L, E)
        for h in range(H):
            Rq, Rk, Rv = reference_attention(qs[h], ks[h], vs[h], additive, R_O[h], TINY,
                                             constant=preset == "cp-lrp")
            got = R.values[b, :, h]
            # the epsilon rule divides by sums of scores that can come close to zero, where rounding
            # of the two implementations differs by a few ulps of the largest term: an absolute
            # tolerance relative to the head's largest relevance
            atol = 1e-9 + 1e-6 * max(np.abs(Rq).max(), np.abs(Rk).max(), np.abs(Rv).max())
            np.testing.assert_allclose(got[0], Rq, rtol=1e-6, atol=atol)
            np.testing.assert_allclose(got[1], Rk, rtol=1e-6, atol=atol)
            np.testing.assert_allclose(got[2], Rv, rtol=1e-6, atol=atol)
            if mask_kind in ("bool", "float"):  # the padded key gets nothing, through k and v
                assert np.all(got[1][-1] == 0) and np.all(got[2][-1] == 0)


@pytest.mark.parametrize("sdpa", [True, False], ids=["sdpa", "written-out"])
def test_cp_lrp_sends_nothing_through_queries_and_keys(sdpa):
    torch.manual_seed(7)
    model = Attention(2, 3, 4, sdpa).eval()
    x = torch.randn(3, 3, 2, 3, 4)
    R, led = sx.Explainer(model, preset="cp-lrp").explain_with_ledger(x)
    assert np.all(R.values[:, :2] == 0)  # queries and keys: exactly zero
    assert np.abs(R.values[:, 2]).sum() > 0
    np.testing.assert_allclose(R.values.astype(np.float64).sum((1, 2, 3, 4)) + R.absorbed.values,
                               R.prediction.values, rtol=1e-5, atol=1e-6)
    if not sdpa:  # the softmax and q k^T are never reached
        assert not any(name.startswith("softmax") for name in led.layer.values)


def test_sdpa_equals_the_written_out_attention():
    torch.manual_seed(8)
    a = Attention(2, 4, 3, True).double().eval()
    b = Attention(2, 4, 3, False).double().eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 2, 4, 3, dtype=torch.float64)
    for preset in ("epsilon", "attnlrp", "cp-lrp"):
        rules = {"base": preset, "op:matmul": (ConstantAttention if preset == "cp-lrp" else BilinearUniform)(TINY)}
        Ra = sx.Explainer(a, preset=rules).explain(x)
        Rb = sx.Explainer(b, preset=rules).explain(x)
        # (the written-out scaling and mask addition have their own 1e-9 stabilisers)
        np.testing.assert_allclose(Ra.values, Rb.values, rtol=1e-4, atol=1e-9)


class GroupedQuery(nn.Module):
    """4 query heads, 2 key/value heads: SDPA's enable_gqa, or the key/value heads repeated."""

    def __init__(self, sdpa):
        super().__init__()
        self.sdpa = sdpa
        self.head = nn.Linear(4 * 3 * 2, 2)

    def forward(self, x):  # x (B, 8, 3, 2): 4 query heads, 2 key heads, 2 value heads
        q, k, v = x[:, :4], x[:, 4:6], x[:, 6:]
        if self.sdpa:
            o = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        else:
            k, v = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
            o = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(2), -1) @ v
        return self.head(o.flatten(1))


def test_grouped_query_attention():
    torch.manual_seed(9)
    a, b = GroupedQuery(True).double().eval(), GroupedQuery(False).double().eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 8, 3, 2, dtype=torch.float64)
    rules = {"base": "attnlrp", "op:matmul": BilinearUniform(TINY)}
    Ra, Rb = sx.Explainer(a, preset=rules).explain(x), sx.Explainer(b, preset=rules).explain(x)
    np.testing.assert_allclose(Ra.values, Rb.values, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(Ra.values.sum((1, 2, 3)) + Ra.absorbed.values, Ra.prediction.values, rtol=1e-9)


class Block(nn.Module):
    """A small multi-head self-attention block from plain torch ops: q/k/v/out projections,
    SDPA or matmul + softmax, a residual, a ReLU MLP, mean pooling and a classifier."""

    def __init__(self, d=8, heads=2, sdpa=True, causal=False):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.mlp = nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, d))
        self.cls = nn.Linear(d, 3)
        self.heads, self.sdpa, self.causal = heads, sdpa, causal

    def split(self, t):
        B, L, D = t.shape
        return t.view(B, L, self.heads, D // self.heads).transpose(1, 2)

    def forward(self, x):
        B, L, D = x.shape
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        if self.sdpa:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:
            a = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(D // self.heads), dim=-1) @ v
        h = x + self.o(a.transpose(1, 2).reshape(B, L, D))
        h = h + self.mlp(h)
        return self.cls(h.mean(dim=1))


@pytest.mark.parametrize("preset", ["epsilon", "epsilon-plus", "alpha2-beta1", "attnlrp", "cp-lrp"])
@pytest.mark.parametrize("sdpa", [True, False], ids=["sdpa", "eager"])
def test_small_multihead_block_ledger_exact(preset, sdpa):
    torch.manual_seed(10)
    model = Block(sdpa=sdpa, causal=sdpa).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(3, 5, 8)
    R, led = sx.Explainer(model, preset=preset).explain_with_ledger(x)
    total = R.values.astype(np.float64).sum((1, 2)) + R.absorbed.values
    np.testing.assert_allclose(total, R.prediction.values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(led.entering.values, led.leaving.values + led.absorbed.values, rtol=1e-5, atol=1e-6)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # model untouched
    expected = {"attnlrp": "BilinearUniform", "cp-lrp": "ConstantAttention"}.get(preset, "BilinearUniform")
    assert expected in R.attrs["rules"]


def test_multihead_attention_module_is_refused_with_what_to_do():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.cls = nn.Linear(8, 2)

        def forward(self, x):
            return self.cls(self.attn(x, x, x)[0].mean(1))
    with pytest.raises(sx.UnsupportedModelError, match=r"attn: no relevance rule for module type MultiheadAttention: .*scaled_dot_product_attention"):
        sx.explain(M().eval(), torch.randn(2, 3, 8))


def test_sdpa_refusals_are_clear():
    class Drop(nn.Module):
        def forward(self, x):
            return F.scaled_dot_product_attention(x, x, x, dropout_p=0.1).flatten(1)

    class LiveMask(nn.Module):
        def forward(self, x):
            return F.scaled_dot_product_attention(x, x, x, attn_mask=x @ x.transpose(-1, -2)).flatten(1)
    with pytest.raises(sx.UnsupportedModelError, match="dropout_p=0.0"):
        sx.explain(Drop().eval(), torch.randn(2, 3, 4))
    with pytest.raises(sx.UnsupportedModelError, match="attn_mask computed from the input"):
        sx.explain(LiveMask().eval(), torch.randn(2, 3, 4))


def test_constant_attention_needs_a_softmax_operand():
    class Plain(nn.Module):
        def forward(self, x):
            return (x @ x.transpose(-1, -2)).flatten(1)
    with pytest.raises(sx.RuleError, match="no operand comes from a softmax"):
        sx.Explainer(Plain().eval(), preset="cp-lrp").explain(torch.randn(2, 3, 2))


# -- transformers built from tiny configs (LayerNorm and GELU: sciexplain.kinds.normalisation/elementwise) --

class Logits(nn.Module):
    """A Hugging Face model called with embeddings or pixels and a constant attention mask,
    returning its logits (the ModelOutput and token-id inputs are handled elsewhere)."""

    def __init__(self, model, mask=None):
        super().__init__()
        self.model = model
        self.register_buffer("mask", mask)

    def forward(self, x):
        if x.ndim == 4:
            return self.model(pixel_values=x).logits
        return self.model(inputs_embeds=x, attention_mask=self.mask).logits


def _tiny(name, impl):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(11)
    common = dict(num_labels=3, attn_implementation=impl)
    if name == "bert":
        cfg = transformers.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=24, **common)
        return transformers.BertForSequenceClassification(cfg).eval()
    if name == "distilbert":
        cfg = transformers.DistilBertConfig(vocab_size=30, dim=16, n_layers=2, n_heads=2, hidden_dim=24, **common)
        return transformers.DistilBertForSequenceClassification(cfg).eval()
    cfg = transformers.ViTConfig(image_size=8, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=24, **common)
    return transformers.ViTForImageClassification(cfg).eval()


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("name", ["bert", "distilbert", "vit"])
def test_transformers_from_tiny_configs(name, impl):
    hf = _tiny(name, impl)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])  # the first text's last token is padding
    model = Logits(hf, None if name == "vit" else mask).eval()
    x = torch.randn(2, 3, 8, 8) if name == "vit" else torch.randn(2, 5, 16)
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    for preset in ("attnlrp", "cp-lrp"):
        R = sx.Explainer(model, preset=preset).explain(x)
        total = R.values.reshape(2, -1).astype(np.float64).sum(1) + R.absorbed.values
        np.testing.assert_allclose(total, R.prediction.values, rtol=1e-5, atol=1e-6)
        if name != "vit":
            assert np.all(R.values[0, 4] == 0)  # the padded token is never attended to
    assert all(torch.equal(state[k], v) for k, v in hf.state_dict().items())


class PreNormBlock(nn.Module):
    """A pre-LayerNorm transformer encoder block (LayerNorm, SDPA or eager attention, GELU MLP)."""

    def __init__(self, d=8, heads=2, sdpa=True):
        super().__init__()
        self.ln1, self.ln2, self.ln_f = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Block(d, heads, sdpa)  # its q/k/v/o projections and attention, called below
        self.mlp = nn.Sequential(nn.Linear(d, 16), nn.GELU(), nn.Linear(16, d))
        self.cls = nn.Linear(d, 3)

    def forward(self, x):
        B, L, D = x.shape
        h = self.ln1(x)
        a = self.attn
        q, k, v = a.split(a.q(h)), a.split(a.k(h)), a.split(a.v(h))
        if a.sdpa:
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            o = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(D // a.heads), dim=-1) @ v
        x = x + a.o(o.transpose(1, 2).reshape(B, L, D))
        x = x + self.mlp(self.ln2(x))
        return self.cls(self.ln_f(x)[:, 0])


@pytest.mark.parametrize("preset", ["epsilon", "attnlrp", "cp-lrp"])
@pytest.mark.parametrize("sdpa", [True, False], ids=["sdpa", "eager"])
def test_full_transformer_block_with_layernorm_and_gelu(preset, sdpa):
    torch.manual_seed(12)
    model = PreNormBlock(sdpa=sdpa).eval()
    x = torch.randn(3, 5, 8)
    R, led = sx.Explainer(model, preset=preset).explain_with_ledger(x)
    total = R.values.astype(np.float64).sum((1, 2)) + R.absorbed.values
    np.testing.assert_allclose(total, R.prediction.values, rtol=1e-5, atol=1e-6)
    assert ("ConstantAttention" if preset == "cp-lrp" else "BilinearUniform") in R.attrs["rules"]


class _EinsumPair(nn.Module):
    """Two input-dependent operands combined by ``einsum(equation)``, shapes from ``sizes``."""

    def __init__(self, equation: str, sizes: dict):
        super().__init__()
        self.eq = equation
        lhs, out = equation.split("->")
        self.a_shape, self.b_shape = ([sizes[c] for c in t[1:]] for t in lhs.split(","))
        n_out = int(np.prod([sizes[c] for c in out[1:]]))
        self.na = int(np.prod(self.a_shape))
        self.proj = nn.Linear(self.na + int(np.prod(self.b_shape)), self.na + int(np.prod(self.b_shape)))
        self.head = nn.Linear(n_out, 2)

    def forward(self, x):
        h = torch.tanh(self.proj(x))
        a = h[:, :self.na].reshape(-1, *self.a_shape)
        b = h[:, self.na:].reshape(-1, *self.b_shape)
        return self.head(torch.einsum(self.eq, a, b).flatten(1))


@settings(max_examples=20, deadline=None)
@given(equation=st.sampled_from(["bhqd,bhkd->bhqk", "bhal,bhlv->bhav", "bij,bjk->bki", "bi,bi->bi",
                                 "bij,bkj->bik", "bji,bjk->bik"]),
       sizes=st.fixed_dictionaries({c: st.integers(1, 3) for c in "hqdkalvijk"}), batch=st.integers(1, 3),
       seed=st.integers(0, 100), preset=st.sampled_from(["attnlrp", "epsilon"]))
def test_einsum_products_by_their_direct_vjp_match_differentiating_them(equation, sizes, batch, seed, preset):
    """Two-operand einsums send relevance back by einsums of S with the other operand (no
    re-run of the product under autograd); the result equals the autograd path's."""
    from sciexplain.kinds import attention
    torch.manual_seed(seed)
    sizes = {**sizes, "b": batch}
    model = _EinsumPair(equation, sizes).double().eval()
    x = torch.randn(batch, model.proj.in_features, dtype=torch.float64)
    fast = sx.explain(model, x, preset=preset)
    original = attention._einsum_vjp
    try:
        attention._einsum_vjp = lambda *a, **k: None
        slow = sx.explain(model, x, preset=preset)
    finally:
        attention._einsum_vjp = original
    np.testing.assert_allclose(fast.values, slow.values, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fast.absorbed.values, slow.absorbed.values, rtol=1e-9, atol=1e-12)
    fast.relevance.check()
