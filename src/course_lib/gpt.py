"""GPT, all of it in this single file: a decoder-only Transformer trained to predict the next token,
its generation loop (greedy, temperature, top-k, top-p, repetition penalty, a KV cache), a
byte-level BPE tokeniser, the count baselines it must beat, a sequence classifier for fine-tuning
and prompting by next-token scores (chapter 8 of the course, placed after BERT).

The module and attribute names copy Hugging Face ``transformers``' ``modeling_gpt2.py`` on purpose
(``transformer.wte``, ``transformer.h.N.attn.c_attn``, ``mlp.c_fc``, ``ln_f``; the linear layers
are :class:`Conv1D`, whose weight is stored ``(in, out)``, the transpose of ``nn.Linear``; the
``lm_head`` shares its weight with ``wte``), so a GPT-2 checkpoint loads with ``load_state_dict``
and no renaming table, and the logits match ``transformers.GPT2LMHeadModel`` (unit tests: max
|diff| <= 1e-5 on random configurations). What HF keeps for generality (head masks,
cross-attention, return_dict tuples, cache classes) is left out; the KV cache is a list of
``(key, value)`` tensors per block.

References
----------
1) Radford et al., "Improving Language Understanding by Generative Pre-Training" (GPT), 2018.
2) Radford et al., "Language Models are Unsupervised Multitask Learners" (GPT-2), 2019.
3) Brown et al., "Language Models are Few-Shot Learners" (GPT-3), NeurIPS 2020. arXiv:2005.14165
4) Vaswani et al., "Attention Is All You Need", NeurIPS 2017. arXiv:1706.03762
5) Holtzman et al., "The Curious Case of Neural Text Degeneration" (top-p), ICLR 2020. arXiv:1904.09751
6) Keskar et al., "CTRL" (repetition penalty), 2019. arXiv:1909.05858
7) Sennrich et al., "Neural Machine Translation of Rare Words with Subword Units" (BPE), ACL 2016.
8) Kneser & Ney, "Improved backing-off for M-gram language modeling", ICASSP 1995; Chen & Goodman,
   "An Empirical Study of Smoothing Techniques for Language Modeling", 1999.
9) Karpathy, minGPT ``mingpt/model.py`` and nanoGPT ``model.py`` (style, ``from_pretrained``).
10) Hugging Face transformers, ``models/gpt2/modeling_gpt2.py``.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import settings
from .device import get_device

__all__ = ["GPTConfig", "Conv1D", "causal_attention", "GPT2Model", "GPT2LMHeadModel",
           "SequenceClassifier", "lm_loss", "perplexity", "make_windows", "process_logits",
           "sample_next_token", "pretrain", "clean_wiki_text", "split_documents", "train_bpe", "encode_documents",
           "encode_batch", "UnigramLM", "BigramLM", "score_options", "IGNORE_INDEX", "PROFILES"]

IGNORE_INDEX = -100   # targets the loss skips (padding), PyTorch's cross_entropy default


# --------------------------------------------------------------------------- configuration
@dataclass
class GPTConfig:
    """Hyper-parameters of a GPT-2-style decoder; field names are those of HF's ``config.json``."""
    vocab_size: int = 50257            # GPT-2's byte-level BPE: 256 bytes + 50,000 merges + <|endoftext|>
    n_positions: int = 1024            # context length: the longest sequence the learned positions cover
    n_embd: int = 768                  # width d of every token vector
    n_layer: int = 12                  # decoder blocks
    n_head: int = 12                   # heads per block; head size = n_embd / n_head
    n_inner: int | None = None         # feed-forward width; None means 4 * n_embd
    activation_function: str = "gelu_new"  # GPT-2's tanh approximation of GELU
    resid_pdrop: float = 0.1           # dropout after attention and feed-forward outputs
    embd_pdrop: float = 0.1            # dropout on token + position embeddings
    attn_pdrop: float = 0.1            # dropout on the attention weights
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02    # std of the normal initialisation
    bos_token_id: int = 50256          # <|endoftext|> starts and ends documents in GPT-2
    eos_token_id: int = 50256
    causal: bool = True                # not in HF: False removes the causal mask (the chapter's pitfall)

    def __post_init__(self):
        for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{key}={value!r} must be a positive integer.")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
                             "choose n_embd a multiple of n_head.")
        if self.activation_function not in _ACTIVATIONS:
            raise ValueError(f"activation_function={self.activation_function!r}; expected one of "
                             f"{sorted(_ACTIVATIONS)}.")
        for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ValueError(f"{key}={getattr(self, key)!r} must be in [0, 1).")

    @property
    def inner(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        """Read an HF ``config.json`` dict, ignoring the keys this class does not use."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


_ACTIVATIONS = {
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),    # GPT-2 (and HF's "gelu_new")
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,                                          # exact (erf)
    "relu": F.relu,
}

# The run sizes of the chapter (one place: the notebook and the benchmark read them here).
PROFILES = {
    "ci": dict(corpus_chars=1_000_000, vocab_size=512, n_positions=32, n_embd=64, n_layer=2,
               n_head=4, epochs=3, batch_size=8, lr=2e-2, n_labels=256, sst_epochs=3, rounds=3),
    "full": dict(corpus_chars=None, vocab_size=8192, n_positions=512, n_embd=384, n_layer=6,
                 n_head=6, epochs=10, batch_size=32, lr=1e-3, n_labels=1000, sst_epochs=3, rounds=2),
}


# --------------------------------------------------------------------------- layers
class Conv1D(nn.Module):
    """GPT-2's linear layer: ``y = x @ weight + bias`` with ``weight`` of shape ``(in, out)``.

    The same map as ``nn.Linear(in, out)``, whose weight is ``(out, in)``; OpenAI's TensorFlow
    code stored it this way and HF kept it, so GPT-2 checkpoints hold the transposed layout.
    """

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask=None,
                     causal: bool = True, dropout: float = 0.0, training: bool = False) -> torch.Tensor:
    """Masked scaled dot-product attention, ``softmax(q k^T / sqrt(d) + M) v``.

    Parameters
    ----------
    q : Tensor (B, h, T_q, d)
        Queries of the newest ``T_q`` positions.
    k, v : Tensor (B, h, T_k, d)
        Keys and values of all ``T_k >= T_q`` positions (a KV cache holds the first ``T_k - T_q``).
    key_mask : BoolTensor (B, T_k), optional
        True for real tokens, False for padding (never attended to).
    causal : bool
        Query ``i`` (absolute position ``T_k - T_q + i``) sees keys ``j <= T_k - T_q + i`` only.

    Returns
    -------
    Tensor (B, h, T_q, d)

    A row with no allowed key (a padding query at the start of a left-padded row) gets uniform
    weights rather than NaN, as in HF (masked scores are the smallest float, not -inf).
    """
    T_q, T_k = q.shape[-2], k.shape[-2]
    allowed = None
    if causal:
        allowed = torch.ones(T_q, T_k, dtype=torch.bool, device=q.device).tril(T_k - T_q)  # (T_q, T_k)
    if key_mask is not None:
        km = key_mask[:, None, None, :].bool()                                  # (B, 1, 1, T_k)
        allowed = km if allowed is None else allowed & km                       # (B, 1, T_q, T_k)
    if allowed is None or (key_mask is None and T_q == 1):                     # nothing to hide
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout if training else 0.0)
    if key_mask is None and T_q == T_k:                                          # the fused causal kernel
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout if training else 0.0)
    bias = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device)
    bias = bias.masked_fill(~allowed, torch.finfo(q.dtype).min)                # 0 or "minus infinity"
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout if training else 0.0)


class GPT2Attention(nn.Module):
    """Multi-head causal self-attention: ``c_attn`` makes q, k, v in one matmul, ``c_proj`` mixes heads."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.causal = config.n_head, config.causal
        self.c_attn = Conv1D(config.n_embd, 3 * config.n_embd)
        self.c_proj = Conv1D(config.n_embd, config.n_embd)
        self.attn_pdrop = config.attn_pdrop
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x, key_mask=None, past=None):
        B, T, C = x.shape                           # batch, new tokens, n_embd
        q, k, v = self.c_attn(x).split(C, dim=2)    # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, h, T, hs)
        if past is not None:                        # the cache: keys and values of earlier positions
            k = torch.cat([past[0], k], dim=2)      # (B, h, T_past + T, hs)
            v = torch.cat([past[1], v], dim=2)
        y = causal_attention(q, k, v, key_mask, self.causal, self.attn_pdrop, self.training)  # (B, h, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)      # heads side by side: (B, T, C)
        return self.resid_dropout(self.c_proj(y)), (k, v)


class GPT2MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = Conv1D(config.n_embd, config.inner)
        self.c_proj = Conv1D(config.inner, config.n_embd)
        self.act = _ACTIVATIONS[config.activation_function]
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))      # (B, T, C) -> (B, T, 4C) -> (B, T, C)


class GPT2Block(nn.Module):
    """Pre-LN decoder block (GPT-2): x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(config)

    def forward(self, x, key_mask=None, past=None):
        a, present = self.attn(self.ln_1(x), key_mask, past)
        x = x + a
        return x + self.mlp(self.ln_2(x)), present


def _check_ids(input_ids, name: str = "input_ids") -> None:
    if not torch.is_tensor(input_ids):
        raise TypeError(f"{name} must be a LongTensor of token ids (B, T), got {type(input_ids).__name__}.")
    if input_ids.dtype not in (torch.long, torch.int, torch.int16, torch.uint8):
        raise TypeError(f"{name} has dtype {input_ids.dtype}; token ids must be integers: "
                        f"pass ids.long() (did you pass embeddings or probabilities?).")
    if input_ids.ndim != 2:
        raise ValueError(f"{name} has shape {tuple(input_ids.shape)}; expected (batch, tokens): "
                         "use ids[None] for one sequence.")


class GPT2Model(nn.Module):
    """The decoder stack: token + position embeddings, ``n_layer`` blocks, final LayerNorm.

    Parameters
    ----------
    config : GPTConfig
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(GPT2Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.apply(lambda m: _init_weights(m, config))

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None):
        """Hidden states ``(B, T, n_embd)`` and the new cache (one ``(k, v)`` per block).

        Parameters
        ----------
        input_ids : LongTensor (B, T)
        attention_mask : (B, T_past + T), optional
            1 for real tokens, 0 for padding, over the cached and the new positions.
        position_ids : LongTensor (B, T) or (1, T), optional
            Default ``T_past, ..., T_past + T - 1`` as in HF: pass them for left-padded rows.
        past_key_values : list of (k, v), optional
            The cache returned by an earlier call.
        """
        _check_ids(input_ids)
        B, T = input_ids.shape
        past_len = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        if T == 0:
            raise ValueError("input_ids has 0 tokens; give at least one token (e.g. <|endoftext|>).")
        if past_len + T > self.config.n_positions:
            raise ValueError(f"sequence of {past_len + T} tokens (cached {past_len} + new {T}) is longer than "
                             f"the context n_positions={self.config.n_positions}; truncate the input, e.g. "
                             f"ids[:, -{self.config.n_positions}:].")
        if position_ids is None:
            position_ids = torch.arange(past_len, past_len + T, device=input_ids.device)[None]  # (1, T)
        if attention_mask is not None and attention_mask.shape != (B, past_len + T):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}; expected "
                             f"{(B, past_len + T)} (cached + new tokens).")
        x = self.drop(self.wte(input_ids) + self.wpe(position_ids))               # (B, T, C)
        presents = []
        for i, block in enumerate(self.h):
            x, present = block(x, attention_mask, None if past_key_values is None else past_key_values[i])
            presents.append(present)
        return self.ln_f(x), presents


def _init_weights(module, config: GPTConfig):
    """GPT-2's initialisation: N(0, 0.02) for weights, zero biases, unit LayerNorm; the output
    projections of each residual branch scaled by 1/sqrt(2 n_layer) (GPT-2 paper, section 2.3)."""
    if isinstance(module, (nn.Linear, nn.Embedding, Conv1D)):
        nn.init.normal_(module.weight, std=config.initializer_range)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    if isinstance(module, (GPT2Attention, GPT2MLP)):
        nn.init.normal_(module.c_proj.weight, std=config.initializer_range / math.sqrt(2 * config.n_layer))


class GPT2LMHeadModel(nn.Module):
    """GPT: the decoder and a language-model head tied to the token embedding.

    ``model(input_ids)`` returns next-token logits ``(B, T, vocab_size)``: row ``t`` scores the
    token at position ``t + 1``, so one forward pass trains every position (targets = inputs
    shifted by one, see :func:`make_windows`). With ``use_cache=True`` it returns ``(logits,
    cache)``.

    Examples
    --------
    >>> cfg = GPTConfig(vocab_size=100, n_positions=16, n_embd=32, n_layer=2, n_head=4)
    >>> model = GPT2LMHeadModel(cfg)
    >>> model(torch.zeros(1, 5, dtype=torch.long)).shape
    torch.Size([1, 5, 100])
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = GPT2Model(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight          # tied: one matrix, two uses

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache: bool = False):
        h, presents = self.transformer(input_ids, attention_mask, position_ids, past_key_values)
        logits = self.lm_head(h)                                     # (B, T, V)
        return (logits, presents) if use_cache else logits

    def num_parameters(self) -> int:
        """Parameters counted once (the tied head is the token embedding)."""
        return sum(p.numel() for p in self.parameters())

    # ----------------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(self, input_ids, max_new_tokens: int, *, temperature: float = 1.0, top_k=None,
                 top_p=None, repetition_penalty: float = 1.0, attention_mask=None, use_cache: bool = True,
                 eos_token_id=None, generator=None):
        """Extend ``input_ids`` (B, T) by ``max_new_tokens`` tokens, one at a time.

        Parameters
        ----------
        input_ids : LongTensor (B, T), T >= 1
        max_new_tokens : int
        temperature : float, default=1.0
            0 means greedy (argmax); see :func:`process_logits` for the others.
        top_k, top_p, repetition_penalty : see :func:`process_logits`
        attention_mask : (B, T), optional
            For a batch of prompts of different lengths, **left**-padded: 0 on the padding. The
            positions then count real tokens only, so each row continues as if it were alone.
        use_cache : bool, default=True
            Keep every block's keys and values (the KV cache) and feed only the newest token;
            False re-runs the whole sequence at every step (same tokens, slower).
        eos_token_id : int, optional
            Rows that produced it keep producing it (the batch runs to ``max_new_tokens``).
        generator : torch.Generator, optional
            For reproducible sampling.

        Returns
        -------
        LongTensor (B, T + max_new_tokens)
        """
        _check_ids(input_ids)
        B, T = input_ids.shape
        if T == 0:
            raise ValueError("empty prompt: input_ids has 0 tokens; start from at least one token, "
                             "e.g. the <|endoftext|> id.")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens={max_new_tokens!r} must be an integer >= 0.")
        if T + max_new_tokens > self.config.n_positions:
            raise ValueError(f"prompt of {T} tokens + max_new_tokens={max_new_tokens} exceeds the context "
                             f"n_positions={self.config.n_positions}; shorten the prompt or generate fewer tokens.")
        process_logits(torch.zeros(1, 2), None, temperature, top_k, top_p, repetition_penalty)  # validate first
        was_training = self.training
        self.eval()
        device = self.transformer.wte.weight.device
        ids = input_ids.to(device)
        mask = (torch.ones_like(ids) if attention_mask is None else attention_mask.to(device).long())
        done = torch.zeros(B, dtype=torch.bool, device=device)
        cache, fed = None, 0                                # fed: tokens already in the cache
        for _ in range(max_new_tokens):
            positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T_all): real tokens count from 0
            if use_cache:
                logits, cache = self(ids[:, fed:], mask, positions[:, fed:], cache, use_cache=True)
                fed = ids.shape[1]
            else:
                logits = self(ids, mask, positions)
            nxt = sample_next_token(logits[:, -1], ids, temperature=temperature, top_k=top_k, top_p=top_p,
                                    repetition_penalty=repetition_penalty, generator=generator)  # (B,)
            if eos_token_id is not None:
                nxt = torch.where(done, torch.full_like(nxt, eos_token_id), nxt)
                done |= nxt == eos_token_id
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(nxt)[:, None]], dim=1)
        self.train(was_training)
        return ids

    # ----------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = "gpt2", device=None) -> "GPT2LMHeadModel":
        """Load GPT-2 weights (HF hub name such as ``"gpt2"``, online only, or a local folder with
        ``config.json`` and ``model.safetensors``) with no renaming: the names are GPT-2's.

        Raises
        ------
        RuntimeError
            Offline (``COURSE_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``) with a hub name: GPT-2 weights
            are not shipped with the course.
        """
        folder = Path(name_or_path)
        if folder.is_dir():
            config_path, weights_path = folder / "config.json", folder / "model.safetensors"
        else:
            if settings.hub_offline():
                raise RuntimeError(f"GPT-2 weights {str(name_or_path)!r} need the internet (Hugging Face hub), "
                                   "and this session is offline (COURSE_OFFLINE=1 or HF_HUB_OFFLINE=1). "
                                   "Unset them when online, or pass a local folder with config.json and "
                                   "model.safetensors.")
            from huggingface_hub import hf_hub_download
            config_path = Path(hf_hub_download(str(name_or_path), "config.json"))
            weights_path = Path(hf_hub_download(str(name_or_path), "model.safetensors"))
        from safetensors.torch import load_file

        config = GPTConfig.from_dict(json.loads(config_path.read_text()))
        state = load_file(str(weights_path))
        model = cls(config)
        load_gpt2_state(model, state)
        return model.to(get_device(device)).eval()


def load_gpt2_state(model: GPT2LMHeadModel, state: dict) -> None:
    """Copy a GPT-2 state dict into ``model``, strictly, with no renaming.

    OpenAI's ``gpt2`` files name the decoder's tensors without the ``transformer.`` prefix that
    ``GPT2LMHeadModel`` adds (HF's ``base_model_prefix``), and may hold the causal-mask buffers
    ``attn.bias``/``attn.masked_bias``, which are not weights; ``lm_head.weight`` is the tied
    ``wte`` when absent.
    """
    state = {k: v for k, v in state.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    if not any(k.startswith("transformer.") for k in state):
        state = {("transformer." + k if not k.startswith("lm_head.") else k): v for k, v in state.items()}
    state.setdefault("lm_head.weight", state["transformer.wte.weight"])
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"state dict does not match GPT2LMHeadModel: missing {missing}, unexpected {unexpected}.")


# --------------------------------------------------------------------------- training helpers
def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (nats) of ``logits`` (B, T, V) against ``targets`` (B, T);
    targets equal to -100 are skipped."""
    if logits.ndim != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)}: expected "
                         "(B, T, V) and (B, T).")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX)


def perplexity(mean_nll: float) -> float:
    """exp(mean negative log-likelihood per token): the effective number of choices per token."""
    return float(math.exp(mean_nll))


def make_windows(ids: torch.Tensor, block_size: int, stride: int | None = None):
    """Cut a token stream into training pairs ``(x, y)`` with ``y`` = ``x`` shifted by one.

    Parameters
    ----------
    ids : LongTensor (N,)
    block_size : int
        Tokens per example (at most the model's ``n_positions``).
    stride : int, default=block_size
        Start of consecutive windows; the default predicts every token once.

    Returns
    -------
    x, y : LongTensor (M, block_size) each; ``y[i, t] == x[i, t + 1]`` and ``y[i, -1]`` is the
        token after the window.
    """
    ids = torch.as_tensor(ids)
    stride = stride or block_size
    if ids.ndim != 1 or len(ids) < block_size + 1:
        raise ValueError(f"need a 1-D stream of at least block_size + 1 = {block_size + 1} tokens, got "
                         f"shape {tuple(ids.shape)}.")
    starts = torch.arange(0, len(ids) - block_size, stride)                   # (M,)
    idx = starts[:, None] + torch.arange(block_size + 1)                       # (M, block_size + 1)
    w = ids[idx]
    return w[:, :-1].contiguous(), w[:, 1:].contiguous()


def pretrain(model: GPT2LMHeadModel, train_xy, val_xy, *, epochs: int = 1, batch_size: int = 32,
             lr: float = 1e-3, rounds: int = 4, warmup: float = 0.05, weight_decay: float = 0.1,
             device=None, on_round=None, seed: int = 0):
    """Pre-train ``model`` by next-token prediction with :func:`course_lib.train.fit`.

    The training windows are shuffled once and cut into ``rounds`` consecutive parts per epoch;
    ``train.fit`` runs once per part with one AdamW optimiser and one warm-up + cosine schedule
    shared by all parts, so the run equals one long fit, but the validation loss is measured (and
    ``on_round(round, val_loss, model)`` is called, e.g. to print samples) ``rounds`` times per epoch.
    This is the only place the chapter calls ``train.fit`` for pre-training.

    Returns
    -------
    dict with ``step_loss`` (every step), ``tokens`` and ``val_loss`` (after each round), ``seconds``.
    """
    import time

    from . import train

    x, y = train_xy
    n = len(x)
    parts_per_epoch = max(1, min(rounds, n // batch_size))
    steps = sum(math.ceil(len(c) / batch_size) for c in np.array_split(np.arange(n), parts_per_epoch)) * epochs
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay)
    warm = max(1, int(warmup * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))))
    g = torch.Generator().manual_seed(seed)
    out = {"step_loss": [], "tokens": [], "val_loss": [], "seconds": 0.0}
    t0, seen = time.perf_counter(), 0
    for epoch in range(epochs):
        order = torch.randperm(n, generator=g)
        for r, idx in enumerate(torch.tensor_split(order, parts_per_epoch)):
            cfg = train.TrainConfig(epochs=1, batch_size=batch_size, lr=lr, grad_clip=1.0,
                                    seed=seed + epoch * parts_per_epoch + r, progress=False)
            hist = train.fit(model, (x[idx], y[idx]), val_xy, loss_fn=lm_loss, config=cfg, device=device,
                             optimizer=opt, scheduler=sched)
            seen += len(idx) * x.shape[1]
            out["step_loss"] += hist.step_loss
            out["tokens"].append(seen)
            out["val_loss"].append(hist.val_loss[-1])
            if on_round is not None:
                on_round(epoch * parts_per_epoch + r + 1, hist.val_loss[-1], model)
    out["seconds"] = time.perf_counter() - t0
    return out


# --------------------------------------------------------------------------- sampling
def process_logits(logits: torch.Tensor, previous=None, temperature: float = 1.0, top_k=None, top_p=None,
                   repetition_penalty: float = 1.0) -> torch.Tensor:
    """Turn next-token logits (B, V) into the logits actually sampled from.

    In order: the repetition penalty (CTRL: a token already in ``previous`` (B, T) has its logit
    divided by the penalty when positive, multiplied when negative), the temperature (logits /
    T; T = 0 is greedy and is handled by :func:`sample_next_token`, never by a division), top-k
    (keep the k largest), top-p (keep the smallest set of most likely tokens whose probability
    reaches p). Removed tokens get -inf.

    Raises
    ------
    ValueError
        temperature < 0, top_k < 1, top_p outside (0, 1], repetition_penalty <= 0.
    """
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature={temperature!r} must be a finite number >= 0 (0 = greedy).")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"top_k={top_k!r} must be an integer >= 1 (or None for no cut).")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p={top_p!r} must be in (0, 1]: 1 keeps every token, 0.9 the likeliest "
                         "tokens covering 90% of the probability.")
    if not (isinstance(repetition_penalty, (int, float)) and repetition_penalty > 0):
        raise ValueError(f"repetition_penalty={repetition_penalty!r} must be > 0 (1 = no penalty).")
    logits = logits.float().clone()                                            # (B, V)
    if repetition_penalty != 1.0 and previous is not None and previous.shape[1]:
        seen = torch.gather(logits, 1, previous)                               # (B, T)
        seen = torch.where(seen > 0, seen / repetition_penalty, seen * repetition_penalty)
        logits.scatter_(1, previous, seen)
    if temperature > 0:
        logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]                 # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)     # (B, V)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs                                       # mass of the likelier tokens
        drop_sorted = before >= top_p                                           # the first token always stays
        drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next_token(logits: torch.Tensor, previous=None, *, temperature: float = 1.0, top_k=None, top_p=None,
                      repetition_penalty: float = 1.0, generator=None) -> torch.Tensor:
    """One next token per row (B,) from logits (B, V): argmax when ``temperature == 0``, else a
    draw from ``softmax(process_logits(...))``."""
    z = process_logits(logits, previous, temperature, top_k, top_p, repetition_penalty)
    if temperature == 0:
        return z.argmax(-1)
    probs = z.softmax(-1)
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


# --------------------------------------------------------------------------- text and tokeniser
def clean_wiki_text(text: str) -> str:
    """Plain paragraphs from gensim's ``filter_wiki`` output: bold/italic quotes removed, blank
    lines and runs of spaces collapsed."""
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"[ \t]+", " ", text)
    lines = [ln.strip() for ln in text.split("\n")]
    return "\n".join(ln for ln in lines if len(ln) > 1)


def split_documents(documents, val_fraction: float = 0.1, seed: int = 0, max_chars: int | None = None):
    """Shuffle whole documents (seeded) and split them into train and validation lists.

    Validation documents are taken until they hold ``val_fraction`` of the characters, so no
    article is in both parts. ``max_chars`` caps the total kept (the ci profile).
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction!r} must be in (0, 1).")
    docs = [d for d in documents if d.strip()]
    if len(docs) < 2:
        raise ValueError(f"need at least 2 non-empty documents to split, got {len(docs)}.")
    order = np.random.default_rng(seed).permutation(len(docs))
    docs = [docs[i] for i in order]
    if max_chars is not None:
        kept, total = [], 0
        for d in docs:
            kept.append(d[:max_chars - total])
            total += len(kept[-1])
            if total >= max_chars:
                break
        docs = kept
    total = sum(len(d) for d in docs)
    val, n = [], 0
    while docs and n < val_fraction * total and len(docs) > 1:
        val.append(docs.pop())
        n += len(val[-1])
    return docs, val


EOT = "<|endoftext|>"


def train_bpe(texts, vocab_size: int = 4096, min_frequency: int = 2):
    """Train a GPT-2-style byte-level BPE with HF ``tokenizers`` on ``texts``.

    Byte-level: text is first turned into its UTF-8 bytes (256 symbols, so nothing is ever
    unknown), split before spaces as GPT-2 does (" the" is one pre-token, the space inside it),
    then the most frequent adjacent pair is merged repeatedly until ``vocab_size`` symbols exist.
    ``<|endoftext|>`` (id ``vocab_size - 1`` at most) separates documents.

    Returns
    -------
    tokenizers.Tokenizer
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(vocab_size, int) or vocab_size < 257:
        raise ValueError(f"vocab_size={vocab_size!r} must be an integer > 256 (the 256 bytes come first).")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(texts), trainer=trainer)
    return tok


def encode_documents(tokenizer, documents) -> torch.Tensor:
    """One token stream (N,) of all ``documents``, each followed by ``<|endoftext|>``."""
    eot = tokenizer.token_to_id(EOT)
    out = []
    for enc in tokenizer.encode_batch(list(documents)):
        out.extend(enc.ids)
        out.append(eot)
    return torch.tensor(out, dtype=torch.long)


def encode_batch(tokenizer, texts, max_length: int, side: str = "right", pad_id: int | None = None) -> torch.Tensor:
    """Packed batch (N, 2, T): ``[:, 0]`` token ids, ``[:, 1]`` attention mask, padded on ``side``.

    Longer texts keep their **last** ``max_length`` tokens (a classifier reading the last token
    needs the end of the sentence). Use ``side="left"`` for batched generation.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side={side!r}; expected 'left' (generation) or 'right' (classification).")
    if isinstance(texts, str) or not len(texts):
        raise ValueError("texts must be a non-empty list of strings.")
    pad_id = tokenizer.token_to_id(EOT) if pad_id is None else pad_id
    encs = [e.ids[-max_length:] for e in tokenizer.encode_batch(list(texts))]
    if any(len(e) == 0 for e in encs):
        raise ValueError("an empty text has no token to read; drop empty strings first.")
    T = max(len(e) for e in encs)
    out = torch.full((len(encs), 2, T), pad_id, dtype=torch.long)
    out[:, 1] = 0
    for i, e in enumerate(encs):
        sl = slice(0, len(e)) if side == "right" else slice(T - len(e), T)
        out[i, 0, sl] = torch.tensor(e)
        out[i, 1, sl] = 1
    return out


# --------------------------------------------------------------------------- count baselines
class UnigramLM:
    """Add-one unigram model: p(w) = (c(w) + 1) / (N + V). Ignores context entirely."""

    def fit(self, ids, vocab_size: int) -> "UnigramLM":
        ids = _as_ids(ids, vocab_size)
        self.vocab_size_ = vocab_size
        self.log_probs_ = np.log((np.bincount(ids, minlength=vocab_size) + 1.0) / (len(ids) + vocab_size))
        return self

    def nll(self, ids) -> float:
        """Mean negative log-likelihood (nats) of every token of ``ids`` but the first (the same
        targets as the bigram's and the GPT's)."""
        ids = _as_ids(ids, self.vocab_size_)
        return float(-self.log_probs_[ids[1:]].mean())


class BigramLM:
    """Bigram model p(w | v) from counts, smoothed by interpolated Kneser-Ney or add-k.

    Kneser-Ney (Chen & Goodman's interpolated form, one discount ``d``):
    ``p(w|v) = max(c(v,w) - d, 0) / c(v) + d N1+(v.) / c(v) * p_cont(w)``, where
    ``p_cont(w)`` is the share of distinct left contexts that ``w`` follows (a word seen after many
    different words is a likely continuation), itself interpolated with the uniform distribution.
    Add-k: ``(c(v,w) + k) / (c(v) + k V)``.

    Parameters
    ----------
    smoothing : {"kneser_ney", "add_k"}
    discount : float in (0, 1), Kneser-Ney's d
    k : float > 0, add-k's pseudo-count
    """

    def __init__(self, smoothing: str = "kneser_ney", discount: float = 0.75, k: float = 0.01):
        if smoothing not in ("kneser_ney", "add_k"):
            raise ValueError(f"smoothing={smoothing!r}; expected 'kneser_ney' or 'add_k'.")
        if not 0 < discount < 1:
            raise ValueError(f"discount={discount!r} must be in (0, 1).")
        if not k > 0:
            raise ValueError(f"k={k!r} must be > 0.")
        self.smoothing, self.discount, self.k = smoothing, discount, k

    def fit(self, ids, vocab_size: int) -> "BigramLM":
        ids = _as_ids(ids, vocab_size)
        V = self.vocab_size_ = vocab_size
        codes, counts = np.unique(ids[:-1] * V + ids[1:], return_counts=True)   # sorted pair codes
        self.codes_, self.counts_ = codes, counts.astype(np.float64)
        prev, nxt = codes // V, codes % V
        self.context_counts_ = np.bincount(prev, weights=self.counts_, minlength=V)   # c(v)
        self.context_types_ = np.bincount(prev, minlength=V).astype(np.float64)       # N1+(v .)
        cont = np.bincount(nxt, minlength=V).astype(np.float64)                      # N1+(. w)
        d = self.discount
        self.p_cont_ = (np.maximum(cont - d, 0) + d * (cont > 0).sum() / V) / cont.sum()
        return self

    def _pair_counts(self, prev, nxt):
        code = prev * self.vocab_size_ + nxt
        pos = np.clip(np.searchsorted(self.codes_, code), 0, len(self.codes_) - 1)
        return np.where(self.codes_[pos] == code, self.counts_[pos], 0.0)

    def prob(self, prev, nxt) -> np.ndarray:
        """p(nxt | prev) for aligned integer arrays."""
        prev, nxt = np.asarray(prev, dtype=np.int64), np.asarray(nxt, dtype=np.int64)
        c_vw, c_v = self._pair_counts(prev, nxt), self.context_counts_[prev]
        if self.smoothing == "add_k":
            return (c_vw + self.k) / (c_v + self.k * self.vocab_size_)
        d, safe = self.discount, np.maximum(c_v, 1)
        backoff = np.where(c_v > 0, d * self.context_types_[prev] / safe, 1.0)
        return np.maximum(c_vw - d, 0) / safe + backoff * self.p_cont_[nxt]

    def nll(self, ids) -> float:
        """Mean negative log-likelihood (nats) of ``ids[1:]`` given the previous token."""
        ids = _as_ids(ids, self.vocab_size_)
        return float(-np.log(self.prob(ids[:-1], ids[1:])).mean())


def _as_ids(ids, vocab_size: int) -> np.ndarray:
    ids = ids.cpu().numpy() if torch.is_tensor(ids) else np.asarray(ids)
    if ids.ndim != 1 or len(ids) < 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be a 1-D integer stream of >= 2 tokens, got shape {ids.shape}, dtype {ids.dtype}.")
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise ValueError(f"token ids span [{ids.min()}, {ids.max()}], outside [0, vocab_size={vocab_size}).")
    return ids.astype(np.int64)


# --------------------------------------------------------------------------- fine-tuning and prompting
class SequenceClassifier(nn.Module):
    """Sentence classifier on a GPT decoder: a linear ``score`` head on the last real token's
    vector (HF's ``GPT2ForSequenceClassification``) or on the mean of the real tokens' vectors.

    The input is a packed, **right**-padded batch ``(B, 2, T)`` from :func:`encode_batch`. With
    causal attention only the last token has read the whole sentence, hence ``pooling="last"``.

    Parameters
    ----------
    transformer : GPT2Model
        Pre-trained (``lm.transformer``) or freshly initialised.
    n_classes : int
    pooling : {"last", "mean"}, default="last"
    """

    def __init__(self, transformer: GPT2Model, n_classes: int, pooling: str = "last", dropout: float = 0.1):
        super().__init__()
        if not isinstance(transformer, GPT2Model):
            raise ValueError(f"transformer must be a course_lib.gpt.GPT2Model, got {type(transformer).__name__}.")
        if not isinstance(n_classes, int) or isinstance(n_classes, bool) or n_classes < 2:
            raise ValueError(f"n_classes={n_classes!r} must be an integer >= 2.")
        if pooling not in ("last", "mean"):
            raise ValueError(f"pooling={pooling!r}; expected 'last' or 'mean'.")
        self.transformer, self.pooling = transformer, pooling
        self.dropout = nn.Dropout(dropout)
        self.score = nn.Linear(transformer.config.n_embd, n_classes)
        nn.init.normal_(self.score.weight, std=transformer.config.initializer_range)
        nn.init.zeros_(self.score.bias)

    def forward(self, x):
        """Class logits (B, n_classes) for a packed right-padded batch (B, 2, T)."""
        if x.ndim != 3 or x.shape[1] != 2:
            raise ValueError(f"expected a packed batch (B, 2, T) from gpt.encode_batch, got {tuple(x.shape)}.")
        mask = x[:, 1]
        T = int(mask.sum(1).max())                                   # trim the shared padding
        ids, mask = x[:, 0, :T], mask[:, :T]
        h, _ = self.transformer(ids, mask)                           # (B, T, C)
        if self.pooling == "last":
            last = mask.sum(1) - 1                                   # (B,) index of the last real token
            pooled = h[torch.arange(len(h), device=h.device), last]  # (B, C)
        else:
            m = mask[..., None].to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)          # (B, C)
        return self.score(self.dropout(pooled))


@torch.no_grad()
def score_options(model: GPT2LMHeadModel, tokenizer, prompts, options, batch_size: int = 64) -> np.ndarray:
    """Log-probability of each option continuing each prompt: ``(len(prompts), len(options))``.

    Each option's score is the sum of its tokens' log-probabilities after the prompt (prompting
    as next-token prediction: "... It was" -> " good" or " bad"). Prompts longer than the context
    keep their end.
    """
    if not options or any(not o for o in options):
        raise ValueError(f"options={options!r} must be non-empty strings.")
    model.eval()
    device = model.transformer.wte.weight.device
    opt_ids = [tokenizer.encode(o).ids for o in options]
    n_ctx = model.config.n_positions
    rows = []
    for i in range(0, len(prompts), batch_size):
        encs = [tokenizer.encode(p).ids for p in prompts[i:i + batch_size]]
        batch_scores = np.zeros((len(encs), len(options)))
        for j, o in enumerate(opt_ids):
            seqs = [(e + o)[-n_ctx:] for e in encs]
            T = max(len(s) for s in seqs)
            ids = torch.zeros(len(seqs), T, dtype=torch.long)
            mask = torch.zeros(len(seqs), T, dtype=torch.long)
            for r, s in enumerate(seqs):                             # right padding: positions stay 0..
                ids[r, :len(s)], mask[r, :len(s)] = torch.tensor(s), 1
            logp = model(ids.to(device), mask.to(device)).float().log_softmax(-1).cpu()   # (B, T, V)
            for r, s in enumerate(seqs):
                L = len(s)
                tgt = torch.tensor(s[L - len(o):])                  # the option's tokens
                pos = torch.arange(L - len(o) - 1, L - 1)           # the positions predicting them
                batch_scores[r, j] = logp[r, pos, tgt].sum().item()
        rows.append(batch_scores)
    return np.concatenate(rows)
